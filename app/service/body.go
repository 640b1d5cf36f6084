// body.go: when `run` is the body of a Windows service — deciding that it is, and what the
// service manager needs of the worker (Body) so that a stop drains it like a first Ctrl+C.
// Answering the manager is body_windows.go's; nothing here knows the Windows API, and nothing in
// this package knows what the worker is: the caller hands it a Body of plain functions.

package service

import (
	"runtime"
	"time"

	kardianos "github.com/kardianos/service"
)

// stopWait bounds how long a Windows service stop waits for the running job to finish and
// its result to be delivered; the service manager is told to expect that long.
const stopWait = 18 * time.Second

// UnderManager reports whether this process was started by the Windows service manager
// (kardianos' session-0 check). systemd and launchd just start the command, so elsewhere it is
// always false.
func UnderManager() bool {
	return runtime.GOOS == "windows" && !kardianos.Interactive()
}

// RunsAsBody reports whether `run` must answer the Windows service manager, which otherwise
// stops the service after about 30 s: the service we install says so with --windows-service
// (WindowsFlag; the session-0 check does not hold under Wine, whose services run in the user's
// session), and one installed by other means is known by the check.
func RunsAsBody(flagged bool) bool {
	return runtime.GOOS == "windows" && flagged || UnderManager()
}

// Body is the worker as the service manager sees it: Start it, ask it to Drain (finish the
// running job, deliver its result, then end), make it Stop now once a drain has outlasted
// stopWait, and Done delivers its exit code once it has ended. Start must not block.
type Body struct {
	Start, Drain, Stop func()
	Done               <-chan int
}
