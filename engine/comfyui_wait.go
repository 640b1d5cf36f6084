// comfyui_wait.go: following a queued ComfyUI prompt until it has run: its /ws messages, with
// /history polled beside them and alone when the socket is gone.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// comfyBinary is the type of the event listen makes of a binary frame (a preview image), which
// ComfyUI sends only to the client whose prompt runs.
const comfyBinary = "studio:binary"

// comfyEvent is one /ws message about a prompt.
type comfyEvent struct {
	Type string `json:"type"`
	Data struct {
		PromptID  string  `json:"prompt_id"`
		Node      *string `json:"node"`
		Value     float64 `json:"value"`
		Max       float64 `json:"max"`
		NodeID    string  `json:"node_id"`
		NodeType  string  `json:"node_type"`
		Exception string  `json:"exception_message"`
		ExcType   string  `json:"exception_type"`
	} `json:"data"`
}

// listen opens ComfyUI's /ws for clientID and forwards its text messages as events, and each
// binary frame as a comfyBinary event, until ctx ends or stop is called; stop waits for the reader. Without a socket it returns a nil channel
// and the wait falls back to polling /history.
func (c *comfyUI) listen(ctx context.Context, clientID string) (<-chan comfyEvent, func()) {
	wsURL := c.url("/ws", url.Values{"clientId": {clientID}})
	wsURL = "ws" + strings.TrimPrefix(wsURL, "http")
	ctx, stop := context.WithCancel(ctx)
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: c.client})
	if err != nil {
		stop()
		c.logger.Debug("comfyui /ws not available; polling /history", "err", err)
		return nil, func() {}
	}
	// Previews arrive as binary frames of any size: no frame limit, and text is capped below.
	conn.SetReadLimit(-1)
	events := make(chan comfyEvent, 32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(events)
		for {
			typ, r, err := conn.Reader(ctx)
			if err != nil {
				return
			}
			var ev comfyEvent
			if typ != websocket.MessageText {
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
				ev.Type = comfyBinary
			} else {
				data, err := io.ReadAll(io.LimitReader(r, 1<<20))
				if err != nil {
					return
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
				if json.Unmarshal(data, &ev) != nil {
					continue
				}
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return events, func() {
		stop() // releases a reader blocked handing over an event nobody reads any more
		conn.CloseNow()
		<-done
	}
}

// wait follows the prompt through /ws messages until it has run, polling /history as well, since
// a socket can miss messages or drop.
//
// A run is over at executing with node null: ComfyUI sends execution_success first, then writes
// the history entry, then executing null, so the history read on execution_success can be {}.
// After execution_success /history is polled often, in case executing null is missed. An
// execution_error of type ExecutionBlocked (a node held back one output on purpose, with a
// message) is not a failure: the run goes on.
//
// Once the prompt runs (its first message: execution_start, executing, progress, or a preview),
// a wait of stall_timeout_s for the next one ends it with ErrStalled. A prompt still queued
// behind others (ComfyUI sends it nothing) is not stalled, nor is one followed by polling alone
// once the socket is gone: timeout_s bounds both.
func (c *comfyUI) wait(parent, ctx context.Context, promptID string, events <-chan comfyEvent, progress Progress, log *slog.Logger) error {
	poll := time.NewTicker(comfyPollEvery(events))
	defer poll.Stop()
	stallAfter := c.cfg.stallTimeout()
	stall := time.NewTimer(stallAfter)
	stall.Stop() // started by the prompt's first message
	defer stall.Stop()
	node := "" // the node running, for the stall's error
	for {
		select {
		case <-ctx.Done():
			return ctxError(parent, ctx, "comfyui")
		case <-stall.C:
			return stalledError("comfyui reported no progress"+node, stallAfter)
		case ev, ok := <-events:
			if !ok {
				events = nil // the socket went away: rely on polling
				poll.Reset(comfyPollEvery(nil))
				stall.Stop()
				continue
			}
			if ev.Type != comfyBinary && ev.Data.PromptID != promptID {
				continue
			}
			stall.Reset(stallAfter)
			switch ev.Type {
			case "progress":
				if ev.Data.Max > 0 {
					progress(0.05+0.9*ev.Data.Value/ev.Data.Max, fmt.Sprintf("step %d/%d", int(ev.Data.Value), int(ev.Data.Max)))
				}
			case "executing":
				if ev.Data.Node == nil {
					return nil
				}
				class := c.wf.nodes[*ev.Data.Node].ClassType
				node = fmt.Sprintf(" at node %s (%s)", *ev.Data.Node, class)
				progress(0, fmt.Sprintf("running node %s (%s)", *ev.Data.Node, class))
			case "execution_success":
				poll.Reset(comfyPollFinishing)
			case "execution_error":
				if ev.Data.ExcType == "ExecutionBlocked" {
					log.Info("comfyui held back an output", "node", ev.Data.NodeID, "node_type", ev.Data.NodeType, "message", clipText(ev.Data.Exception))
					continue
				}
				return backendFailed(true, "comfyui node %s (%s) failed%s: %s", ev.Data.NodeID, ev.Data.NodeType, typeLabel(ev.Data.ExcType), clipText(ev.Data.Exception))
			case "execution_interrupted":
				return backendFailed(true, "comfyui interrupted the prompt")
			}
		case <-poll.C:
			done, err := c.historyDone(parent, ctx, promptID)
			if err != nil || done {
				return err
			}
		}
	}
}

// comfyPollFinishing is how often /history is read once execution_success came: the entry is
// written moments later.
const comfyPollFinishing = 250 * time.Millisecond

func comfyPollEvery(events <-chan comfyEvent) time.Duration {
	if events == nil {
		return time.Second
	}
	return 5 * time.Second
}

// comfyHistory is one prompt's entry of /history/{prompt_id}.
type comfyHistory struct {
	Outputs map[string]map[string]json.RawMessage `json:"outputs"`
	Status  struct {
		StatusStr string            `json:"status_str"`
		Completed bool              `json:"completed"`
		Messages  []json.RawMessage `json:"messages"`
	} `json:"status"`
}

func (c *comfyUI) history(parent, ctx context.Context, promptID string) (*comfyHistory, error) {
	var h map[string]comfyHistory
	if err := c.getJSON(parent, ctx, "/history/"+url.PathEscape(promptID), &h); err != nil {
		return nil, err
	}
	e, ok := h[promptID]
	if !ok {
		return nil, nil
	}
	return &e, nil
}

// A history entry that is not there yet for a run that is over is read again historyRetries
// times, after 100 ms and doubling: about 1.5 s in all, since the entry is written as the run ends.
const (
	historyRetries    = 4
	historyRetryFirst = 100 * time.Millisecond
)

// finishedHistory reads the entry of a prompt that has run, reading again briefly while it is
// missing, in case the end of the run was seen before the entry was written.
func (c *comfyUI) finishedHistory(parent, ctx context.Context, promptID string) (*comfyHistory, error) {
	for i := 0; ; i++ {
		h, err := c.history(parent, ctx, promptID)
		if err != nil || h != nil {
			return h, err
		}
		if i == historyRetries {
			return nil, backendFailed(true, "comfyui has no history for prompt %s", promptID)
		}
		t := time.NewTimer(historyRetryFirst << i)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctxError(parent, ctx, "comfyui")
		case <-t.C:
		}
	}
}

// historyDone reports whether the prompt has finished, or the error it ended with.
func (c *comfyUI) historyDone(parent, ctx context.Context, promptID string) (bool, error) {
	h, err := c.history(parent, ctx, promptID)
	if err != nil || h == nil {
		return false, err
	}
	if h.Status.StatusStr == "error" {
		return false, backendFailed(true, "comfyui could not run the prompt: %s", lastMessage(h.Status.Messages))
	}
	return h.Status.Completed || h.Status.StatusStr == "success", nil
}

func lastMessage(msgs []json.RawMessage) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		var m []json.RawMessage
		if json.Unmarshal(msgs[i], &m) == nil && len(m) == 2 {
			var d struct {
				NodeID    string `json:"node_id"`
				NodeType  string `json:"node_type"`
				Exception string `json:"exception_message"`
				ExcType   string `json:"exception_type"`
			}
			if json.Unmarshal(m[1], &d) == nil && d.Exception != "" {
				at := ""
				if d.NodeID != "" {
					at = fmt.Sprintf("node %s (%s) failed%s: ", d.NodeID, d.NodeType, typeLabel(d.ExcType))
				}
				return at + clipText(d.Exception)
			}
		}
	}
	return "no details"
}

// typeLabel puts an exception's type in parentheses, " (torch.OutOfMemoryError)", "" when none.
func typeLabel(t string) string {
	if t == "" {
		return ""
	}
	return " (" + t + ")"
}
