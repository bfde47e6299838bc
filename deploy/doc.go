// Package deploy holds no code: its directory has the packaging of x0t
// (systemd units, the Dockerfile's companions, the Helm chart of the control
// plane, the Grafana dashboard and Prometheus alert rules), and its tests
// check them against the real binary, systemd-analyze, helm and the metric
// registries.
package deploy
