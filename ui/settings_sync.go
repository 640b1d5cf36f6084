// settings_sync.go: keeps the Settings form on the config the worker holds. Every path that
// saves the config (Register on the first-run page, the CLI, another window, this form) moves
// State.ConfigRev; the form reloads when it moves and it holds no edits, and refuses to save
// over a newer config when it does. It must not know what the fields mean: collect and fill do.

package ui

import (
	"encoding/json"
)

// followRev is called with each State's ConfigRev on the UI thread.
func (v *settingsView) followRev(rev uint64) {
	if rev == v.rev {
		return
	}
	v.rev = rev
	switch {
	case v.saving:
		// This form's own save moved it, or something else did meanwhile: the save's end
		// reloads either way.
	case !v.haveLoaded || !v.edited():
		v.reloadThen(nil) // quietly: a "Saved." on the status line stays
	default:
		v.stale = true
		v.save.Disable()
		setSubtle(v.status, "The settings were changed elsewhere (another window, the command line or the first-run page) "+
			"since you began editing. Press Reload to see them; your edits here are replaced. Save stays off until then, "+
			"so the newer settings are not overwritten.")
	}
}

// edited says whether the form holds changes not yet saved: anything it would save that differs
// from what was loaded, or a field it cannot read.
func (v *settingsView) edited() bool {
	s, bad := v.collect()
	if len(bad) > 0 {
		return true
	}
	// JSON rather than reflect.DeepEqual: a nil list and an empty one are the same setting.
	a, errA := json.Marshal(s)
	b, errB := json.Marshal(v.loaded)
	return errA != nil || errB != nil || string(a) != string(b)
}
