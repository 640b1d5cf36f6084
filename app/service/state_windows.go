//go:build windows

// state_windows.go: whether the Windows service is installed and running, asked of the service
// manager with the least rights that answer, for a window that must say which of the logon entry
// and the service starts the worker. It must not know what the caller does with the answer.

package service

import (
	"errors"
	"fmt"

	kardianos "github.com/kardianos/service"
	"golang.org/x/sys/windows"
)

// WindowsState asks kardianos whether the Windows service of `studio-worker service` is
// installed and running. kardianos opens the service with start and stop rights, which a user
// without administrator rights (or a UAC-filtered administrator) lacks once it exists, so that
// refusal is asked again with query rights only, which every signed-in user has.
func WindowsState(opts Options) (installed, running bool, err error) {
	s, err := serviceFor(opts)
	if err != nil {
		return false, false, err
	}
	st, err := s.Status()
	switch {
	case errors.Is(err, kardianos.ErrNotInstalled):
		return false, false, nil
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		return queryState(Name)
	case err != nil:
		return false, false, err
	}
	return true, st == kardianos.StatusRunning, nil
}

// queryState opens a service with SERVICE_QUERY_STATUS only.
func queryState(name string) (installed, running bool, err error) {
	m, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return false, false, fmt.Errorf("open the service manager: %w", err)
	}
	defer windows.CloseServiceHandle(m)
	n, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return false, false, err
	}
	h, err := windows.OpenService(m, n, windows.SERVICE_QUERY_STATUS)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("open the service %s: %w", name, err)
	}
	defer windows.CloseServiceHandle(h)
	var ss windows.SERVICE_STATUS
	if err := windows.QueryServiceStatus(h, &ss); err != nil {
		return false, false, fmt.Errorf("query the service %s: %w", name, err)
	}
	return true, ss.CurrentState == windows.SERVICE_RUNNING, nil
}
