// template_test.go: our copy of kardianos' template engine renders every form it knows as
// kardianos' own Install does (through servicetest's fake systemctl), and refuses what it does
// not know.

package service

import (
	"os"
	"testing"

	"studioworker/app/service/servicetest"
)

// TestServiceTemplateEngineMatchesKardianos feeds templates that use every form of kardianos'
// engine through its real systemd Install and through ours: the texts must be the same.
func TestServiceTemplateEngineMatchesKardianos(t *testing.T) {
	templates := []struct{ name, text string }{
		{"values and pipelines", "A={{Name}} B={{ Path | cmdEscape }} C={{Description | cmd | cmd}}\n"},
		{"range with dot", "{{range Arguments}}[{{.}}|{{. | cmd}}]{{end}}\n"},
		{"range over nothing", "x{{range EnvVars}}never{{end}}y{{range Dependencies}}never{{end}}z\n"},
		{"if else", "{{if Name}}yes{{else}}no{{end}} {{if ChRoot}}yes{{else}}no{{end}} {{if EnvVars}}e{{end}}\n"},
		{"trim markers", "a  \n  {{- Name -}}  \n  b {{if Restart -}}\n  r={{Restart}}  {{- end}}\n"},
		{"nested", "{{if Arguments}}{{range Arguments}}{{if Name}}<{{.}}>{{end}}{{end}}{{end}}\n"},
		{"our unit", systemdTemplate},
	}
	for _, tt := range templates {
		t.Run(tt.name, func(t *testing.T) {
			f := servicetest.UseFakeSystemctl(t)
			exe, args, err := commandLine(testOptions(t), "linux")
			if err != nil {
				t.Fatal(err)
			}
			c := kardianosConfig(exe, args)
			c.Option["SystemdScript"] = tt.text
			s, err := newService(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Install(); err != nil {
				t.Fatal(err)
			}
			written, err := os.ReadFile(f.UnitFile(Name))
			if err != nil {
				t.Fatal(err)
			}
			data, err := systemdData(c)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := renderTemplate(tt.text, data, systemdFuncs())
			if err != nil {
				t.Fatal(err)
			}
			if ours != string(written) {
				t.Errorf("kardianos:\n%q\nours:\n%q", written, ours)
			}
		})
	}
}

func TestServiceTemplateErrors(t *testing.T) {
	for _, text := range []string{"{{Name", "{{Missing}}", "{{Name | nofunc}}", "{{range Name}}x{{end}}", "{{range Arguments}}x", "{{end}}", "{{if}}x{{end}}"} {
		if out, err := renderTemplate(text, map[string]any{"Name": "n", "Arguments": []string{"a"}}, nil); err == nil {
			t.Errorf("%q rendered %q, want an error", text, out)
		}
	}
}
