// comfyui_workflow.go: a ComfyUI API-format workflow file: loading it, checking the mapping
// against it, and filling a fresh copy per job.
package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxWorkflowBytes caps a workflow file; real ones are tens of kilobytes.
const maxWorkflowBytes = 16 << 20

// comfyWorkflow is a ComfyUI API-format workflow: node id -> {class_type, inputs, ...}.
type comfyWorkflow struct {
	raw   []byte
	nodes map[string]struct {
		ClassType string                     `json:"class_type"`
		Inputs    map[string]json.RawMessage `json:"inputs"`
	}
}

func loadWorkflow(path string) (*comfyWorkflow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxWorkflowBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(raw) > maxWorkflowBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxWorkflowBytes)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object: %w", path, err)
	}
	if _, ok := probe["nodes"]; ok {
		if _, ok := probe["links"]; ok {
			return nil, fmt.Errorf("%s is in ComfyUI's UI format; export it with \"Save (API)\" instead", path)
		}
	}
	wf := &comfyWorkflow{raw: raw}
	if err := json.Unmarshal(raw, &wf.nodes); err != nil {
		return nil, fmt.Errorf("%s is not an API-format workflow (node id -> {class_type, inputs}): %w", path, err)
	}
	if len(wf.nodes) == 0 {
		return nil, fmt.Errorf("%s has no nodes", path)
	}
	for _, id := range sortedKeys(wf.nodes) {
		if wf.nodes[id].ClassType == "" || wf.nodes[id].Inputs == nil {
			return nil, fmt.Errorf("%s: node %q has no class_type or inputs; is this an API-format workflow?", path, id)
		}
	}
	return wf, nil
}

// check reports whether a mapping target exists in the workflow.
func (wf *comfyWorkflow) check(field string, ni NodeInput) error {
	n, ok := wf.nodes[ni.Node]
	if !ok {
		return fmt.Errorf("node %q is not in the workflow", ni.Node)
	}
	if _, ok := n.Inputs[ni.Input]; !ok {
		return fmt.Errorf("node %q (%s) has no input %q (it has: %s)", ni.Node, n.ClassType, ni.Input, strings.Join(sortedKeys(n.Inputs), ", "))
	}
	return nil
}

// fill returns the workflow with the mapped inputs set to values, as a fresh tree per job.
func (wf *comfyWorkflow) fill(mapping map[string]NodeInput, values map[string]any) (map[string]any, error) {
	var tree map[string]any
	dec := json.NewDecoder(bytes.NewReader(wf.raw))
	dec.UseNumber() // keep the workflow's numbers exactly as written
	if err := dec.Decode(&tree); err != nil {
		return nil, err
	}
	for field, v := range values {
		ni, ok := mapping[field]
		if !ok {
			continue
		}
		node, _ := tree[ni.Node].(map[string]any)
		inputs, _ := node["inputs"].(map[string]any)
		if inputs == nil {
			return nil, fmt.Errorf("workflow node %q has no inputs", ni.Node)
		}
		inputs[ni.Input] = v
	}
	return tree, nil
}
