// ownpids_linux.go: a process's parent, from /proc/PID/stat.

package gpu

import (
	"os"
	"strconv"
	"strings"
)

// parentPID reads the parent from /proc/PID/stat. The command name (field 2)
// may contain spaces and parentheses, so parsing starts after the last ')'.
func parentPID(pid uint32) (uint32, bool) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return 0, false
	}
	return parseStatPPID(string(b))
}

func parseStatPPID(stat string) (uint32, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:]) // state ppid pgrp ...
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(pp), true
}
