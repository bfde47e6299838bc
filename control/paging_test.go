package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/x0tta6bl4/x0t/control/apitypes"
)

// TestListPaging follows the "next" cursor of a list two items at a time:
// every item comes exactly once, in order, the last page has no cursor, an
// empty list is [] (not null), and the client's ListTokens gathers the same.
func TestListPaging(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	c, org := ts.newOrg("paging")
	must[*apitypes.Mesh](t)(c.CreateMesh(ctx, apitypes.CreateMeshRequest{Name: "m"}))
	hc := ts.rawClient()
	key := org.Key.Key
	get := func(after string) apitypes.TokenList {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/meshes/m/tokens?limit=2&after=%s", ts.url, after), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw map[string]json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET tokens after %q: %s, %v", after, resp.Status, err)
		}
		if string(raw["items"]) == "null" {
			t.Fatal("items is null, want a list")
		}
		var l apitypes.TokenList
		if err := json.Unmarshal(raw["items"], &l.Items); err != nil {
			t.Fatal(err)
		}
		if n, ok := raw["next"]; ok {
			json.Unmarshal(n, &l.Next)
		}
		return l
	}
	if l := get(""); len(l.Items) != 0 || l.Next != "" {
		t.Fatalf("empty list: %+v", l)
	}
	var want []string
	for range 5 {
		tok := must[*apitypes.CreatedToken](t)(c.CreateToken(ctx, "m", apitypes.CreateTokenRequest{}))
		want = append(want, tok.ID)
	}
	slices.Sort(want)
	var got []string
	after, pages := "", 0
	for {
		l := get(after)
		pages++
		if len(l.Items) > 2 {
			t.Fatalf("page of %d items with limit 2", len(l.Items))
		}
		for _, it := range l.Items {
			got = append(got, it.ID)
		}
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("%d pages gave %v, want %v in 3 pages", pages, got, want)
	}
	all := must[[]apitypes.Token](t)(c.ListTokens(ctx, "m"))
	if len(all) != len(want) {
		t.Fatalf("ListTokens: %d tokens, want %d", len(all), len(want))
	}
}
