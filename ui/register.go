// register.go: the registration form's submit, shared by the first-run page and Settings: the
// checks made before anything is sent, the call, and each error next to its field. It must not
// know which page lends it the form.

package ui

import (
	"context"
	"errors"
	"strings"

	"studioworker/app"

	"fyne.io/fyne/v2/widget"
)

func (v *settingsView) doRegister() {
	insecure := v.insecure.Checked
	req := app.RegisterRequest{ServerURL: strings.TrimSpace(v.serverURL.Text), PairingCode: strings.TrimSpace(v.pairing.Text),
		Name: strings.TrimSpace(v.name.Text), AllowInsecure: &insecure}
	submitRegistration(v.act, req, registerForm{button: v.register, status: v.regStatus, pairing: v.pairing, showErrors: v.showErrors, done: v.load})
}

// registerForm is what a page with a registration form lends submitRegistration.
type registerForm struct {
	button     *widget.Button
	status     *widget.RichText
	pairing    *widget.Entry
	showErrors func(map[string]string)
	done       func() // after a successful registration; nil = nothing more
}

// submitRegistration checks the form here (nothing is sent without an address and a code), then
// asks the controller on the page's action runner and puts each error next to its field.
func submitRegistration(act settingsActions, req app.RegisterRequest, f registerForm) {
	bad := map[string]string{}
	if req.ServerURL == "" {
		bad["server_url"] = "enter your Studio's address"
	}
	if req.PairingCode == "" {
		bad["pairing_code"] = "enter the pairing code your Studio shows"
	}
	setSubtle(f.status, "")
	f.showErrors(bad)
	if len(bad) > 0 {
		return
	}
	f.button.Disable()
	setSubtle(f.status, "Registering…")
	act.run("Register", func(ctx context.Context) error {
		return act.controller().Register(ctx, req)
	}, func(err error) {
		f.button.Enable()
		var ve *app.ValidationError
		switch {
		case errors.As(err, &ve):
			setSubtle(f.status, "Not registered.")
			f.showErrors(ve.Fields)
		case err != nil:
			setSubtle(f.status, "Not registered: "+err.Error())
		default:
			f.pairing.SetText("")
			setSubtle(f.status, "Registered. Connecting…")
			if f.done != nil {
				f.done()
			}
		}
	})
}
