// models.go matches the models a creator configured against the ones a backend says it serves,
// so the worker advertises only what the backend has, and says which configured ones it lacks,
// instead of letting the backend answer with whatever it has loaded. It must not fetch anything.

package engine

import (
	"slices"
	"strings"
)

// matchModels splits configured into the models served has and the ones it lacks, keeping the
// configured spelling (which is what the worker advertises and jobs name). Ollama tags a model
// ":latest" when no tag is given, so "llama3.2" and "llama3.2:latest" are one model.
func matchModels(configured, served []string) (have, missing []string) {
	for _, m := range configured {
		if slices.ContainsFunc(served, func(s string) bool { return sameModel(m, s) }) {
			have = append(have, m)
		} else {
			missing = append(missing, m)
		}
	}
	return have, missing
}

func sameModel(a, b string) bool {
	return strings.EqualFold(untagged(a), untagged(b))
}

func untagged(m string) string { return strings.TrimSuffix(m, ":latest") }

// withUntagged adds to a list a server gave the name without ":latest" of each model tagged so,
// after it: the hub and the worker's admission match model names as written, and a job for
// "llama3.2" must reach a worker whose Ollama lists "llama3.2:latest".
func withUntagged(served []string) []string {
	out := make([]string, 0, len(served))
	for _, m := range served {
		out = append(out, m)
		if u := untagged(m); u != m && !slices.ContainsFunc(served, func(s string) bool { return strings.EqualFold(s, u) }) {
			out = append(out, u)
		}
	}
	return out
}

// answeredModel is what a result says about the model that answered (spec §6): the model the
// backend reported, only when it is not the one the job asked for, since repeating the job's own
// model tells the hub nothing.
func answeredModel(reported, asked string) string {
	if reported == "" || sameModel(reported, asked) {
		return ""
	}
	return reported
}
