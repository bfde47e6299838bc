package busypoll

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readable polls fd once with a zero timeout. Like the transport's recvmmsg
// it is a raw syscall: it can not sleep, and telling the scheduler about it
// would only wake the runtime's monitor thread.
func readable(fd uintptr) (bool, error) {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	var zero unix.Timespec
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return false, os.NewSyscallError("ppoll", e)
		case n == 0:
			return false, nil
		case pfd.Revents&unix.POLLNVAL != 0:
			return false, os.NewSyscallError("ppoll", unix.EBADF)
		}
		// POLLIN, or POLLERR/POLLHUP: either way a read returns at once.
		return true, nil
	}
}

// yield offers the CPU to any other runnable thread.
func yield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
