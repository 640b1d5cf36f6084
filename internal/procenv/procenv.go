// Package procenv builds the environment of a child process from this one's: some keys set,
// some dropped. The tests and the bench start the real binaries with it (a private D-Bus, a
// display of their own); it must not know what the keys mean.
package procenv

import "strings"

// With returns env with every key in set replaced and the keys in drop removed (a key in both is
// set).
func With(env []string, set map[string]string, drop ...string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok {
			continue
		}
		dropped := false
		for _, d := range drop {
			dropped = dropped || k == d
		}
		if !dropped {
			out = append(out, kv)
		}
	}
	for k, v := range set {
		out = append(out, k+"="+v)
	}
	return out
}
