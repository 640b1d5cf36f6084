// llm.go: the llm figure — an answer's added time through hub and worker over calling a paced
// stand-in server directly, at several lengths, so a per-token cost shows as a slope.

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"studioworker/app"
	"studioworker/engine"
	"studioworker/hub"
	"studioworker/protocol"
)

// The llm figure's paced server: one token per chunk, one chunk every llmPace.
const (
	llmModel = "bench-llm"
	llmPace  = 200 * time.Microsecond
)

// llmTokens are the answer lengths the figure measures: the added time must not grow with them.
var llmTokens = []int{16, 256, 2048}

// pacedServer is an OpenAI-compatible server on loopback that streams answers like
// llama-server's: "data: {chunk}" events of one token each, at a fixed pace (token i is due i
// paces after the request's headers are sent, so late wake-ups do not add up), then a chunk with
// finish_reason "length", a usage chunk and "data: [DONE]". The answer has max_tokens tokens.
type pacedServer struct {
	ln       net.Listener
	srv      *http.Server
	served   chan error
	handlers sync.WaitGroup
}

func startPacedServer() (*pacedServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &pacedServer{ln: ln, served: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"id":%q,"object":"model","owned_by":"bench"}]}`, llmModel)
	})
	mux.HandleFunc("POST /v1/chat/completions", p.chat)
	p.srv = &http.Server{Handler: mux}
	go func() { p.served <- p.srv.Serve(ln) }()
	return p, nil
}

// URL is the base URL an openai backend is configured with.
func (p *pacedServer) URL() string { return "http://" + p.ln.Addr().String() + "/v1" }

func (p *pacedServer) close() {
	_ = p.srv.Close()
	<-p.served
	p.handlers.Wait()
}

func (p *pacedServer) chat(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Done()
	var req struct {
		Model     string `json:"model"`
		MaxTokens int    `json:"max_tokens"`
		Stream    bool   `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !req.Stream || req.MaxTokens <= 0 {
		http.Error(w, `{"error":{"message":"want a streamed request with max_tokens","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	start := time.Now()
	created := start.Unix()
	id := "chatcmpl-bench" + strconv.FormatInt(start.UnixNano(), 36)
	var buf []byte
	event := func(choices string, usage string) error {
		buf = append(buf[:0], `data: {"choices":`...)
		buf = append(buf, choices...)
		buf = append(buf, `,"created":`...)
		buf = strconv.AppendInt(buf, created, 10)
		buf = append(buf, `,"id":"`...)
		buf = append(buf, id...)
		buf = append(buf, `","model":"`...)
		buf = append(buf, req.Model...)
		buf = append(buf, `","system_fingerprint":"b0000-bench","object":"chat.completion.chunk"`...)
		if usage != "" {
			buf = append(buf, `,"usage":`...)
			buf = append(buf, usage...)
		}
		buf = append(buf, "}\n\n"...)
		_, err := w.Write(buf)
		if fl != nil {
			fl.Flush()
		}
		return err
	}
	for i := range req.MaxTokens {
		if wait := time.Until(start.Add(time.Duration(i+1) * llmPace)); wait > 0 {
			time.Sleep(wait)
		}
		// Tokens of different lengths, as a real answer has: " word3", " word42", ...
		tok := `[{"finish_reason":null,"index":0,"delta":{"content":" word` + strconv.Itoa(i%97) + `"}}]`
		if err := event(tok, ""); err != nil {
			return
		}
	}
	if event(`[{"finish_reason":"length","index":0,"delta":{}}]`, "") != nil {
		return
	}
	if event(`[]`, fmt.Sprintf(`{"completion_tokens":%d,"prompt_tokens":1,"total_tokens":%d}`, req.MaxTokens, req.MaxTokens+1)) != nil {
		return
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if fl != nil {
		fl.Flush()
	}
}

// llmJob is the figure's job: an answer of n tokens.
func llmJob(n int) protocol.JobRequest {
	return protocol.JobRequest{Kind: protocol.KindLLM, Model: llmModel,
		Input: json.RawMessage(fmt.Sprintf(`{"prompt":"bench","max_tokens":%d}`, n))}
}

// directChat is the baseline: the chat request the worker's engine sends, sent straight to the
// server by a bare client that reads the stream's lines up to "data: [DONE]", timed from the
// moment it is sent.
func directChat(ctx context.Context, client *http.Client, url string, n int) (time.Duration, error) {
	body, err := json.Marshal(map[string]any{
		"model": llmModel, "messages": []map[string]string{{"role": "user", "content": "bench"}},
		"stream": true, "stream_options": map[string]any{"include_usage": true}, "max_tokens": n,
	})
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("direct chat: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	chunks := 0
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Equal(line, []byte("data: [DONE]")) {
			if chunks != n+2 {
				return 0, fmt.Errorf("direct chat: %d chunks, want %d", chunks, n+2)
			}
			return time.Since(t0), nil
		}
		if bytes.HasPrefix(line, []byte("data:")) {
			chunks++
		}
	}
	return 0, fmt.Errorf("direct chat: the stream ended without [DONE]: %v", sc.Err())
}

// llmSplit is where one job's time went: POST /v1/jobs → the engine's Run ("job started"), the
// engine's Run, and Run's return → the result read back from the hub.
type llmSplit struct{ toRun, run, after, toDone time.Duration }

// hubChat is one job through the hub and the worker: POST /v1/jobs until its result is read back
// from the hub, with the answer checked.
func hubChat(ctx context.Context, hc *hub.Client, pr *probe, n int) (time.Duration, llmSplit, error) {
	var sp llmSplit
	t0 := time.Now()
	id, err := hc.Submit(ctx, llmJob(n))
	if err != nil {
		return 0, sp, fmt.Errorf("submit: %w", err)
	}
	// The answer that says the job is completed carries its JSON result (GET /v1/jobs/{id}), as
	// a client reads it: a GET of /result after it would read the same bytes a second time,
	// which the direct request has no counterpart of (the figure did so before issue 16's fix).
	info, err := waitJobDone(ctx, hc, id, 60*time.Second)
	if err != nil {
		return 0, sp, err
	}
	d := time.Since(t0)
	var res protocol.LLMResult
	if err := json.Unmarshal(info.Result, &res); err != nil {
		return 0, sp, fmt.Errorf("result of %s: %w", id, err)
	}
	if res.Usage.CompletionTokens != n {
		return 0, sp, fmt.Errorf("result of %s: %d tokens, want %d", id, res.Usage.CompletionTokens, n)
	}
	if err := pr.waitEnded(ctx, id, 10*time.Second); err != nil {
		return 0, sp, err
	}
	start, _ := pr.waitStarted(ctx, id, time.Second)
	end, _ := pr.engineEnded(id)
	sp.toRun, sp.run = start.Sub(t0), end.Sub(start)
	sp.after = d - sp.toRun - sp.run
	if done, ok := pr.endedAt(id); ok {
		sp.toDone = done.Sub(end)
	}
	pr.forget()
	return d, sp, nil
}

// runLLM: an llm job through the studio-hub process and an in-process worker whose llm kind is
// the openai backend pointed at the paced server, timed from its POST /v1/jobs until its result
// is read back, beside the same chat request sent straight to the server (the baseline, in the
// same round). For each answer length the figure is the difference, paired round by round; the
// slope says what a thousand more tokens add.
func runLLM(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	ps, err := startPacedServer()
	if err != nil {
		return res, err
	}
	defer ps.close()
	dir, h, err := startFigureHub(ctx, e, "llm")
	if err != nil {
		return res, err
	}
	defer h.stop()
	hc := h.client()
	fl, err := startFleet(ctx, filepath.Join(dir, "workers"), hc, h.URL(), 1, 1, func(c *app.Config) {
		c.Engines[protocol.KindLLM] = engine.BackendConfig{Backend: engine.BackendOpenAI, URL: ps.URL(), VRAMGB: 4}
	})
	if err != nil {
		return res, err
	}
	defer fl.stop()
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer direct.CloseIdleConnections()

	const warmup = 3
	rounds := e.size.llmRounds
	type series struct {
		hub, direct, added             []time.Duration
		toRun, runAdded, after, toDone []time.Duration
	}
	got := map[int]*series{}
	for _, n := range llmTokens {
		got[n] = &series{}
	}
	for i := range warmup + rounds {
		for _, n := range llmTokens {
			// Alternate which goes first, so neither always runs right after the other's tail.
			var dd, hd time.Duration
			var sp llmSplit
			var err error
			if i%2 == 0 {
				if dd, err = directChat(ctx, direct, ps.URL(), n); err == nil {
					hd, sp, err = hubChat(ctx, hc, fl.probe, n)
				}
			} else {
				if hd, sp, err = hubChat(ctx, hc, fl.probe, n); err == nil {
					dd, err = directChat(ctx, direct, ps.URL(), n)
				}
			}
			if err != nil {
				return res, fmt.Errorf("%d tokens: %w", n, err)
			}
			if i >= warmup {
				s := got[n]
				s.hub, s.direct, s.added = append(s.hub, hd), append(s.direct, dd), append(s.added, hd-dd)
				s.toRun, s.runAdded, s.after = append(s.toRun, sp.toRun), append(s.runAdded, sp.run-dd), append(s.after, sp.after)
				s.toDone = append(s.toDone, sp.toDone)
			}
		}
	}

	res.detail("rounds", rounds)
	res.detail("pace_ms_per_token", float64(llmPace)/float64(time.Millisecond))
	res.detail("tokens", llmTokens)
	p50 := map[int]float64{}
	for _, n := range llmTokens {
		s := got[n]
		hs, ds, as := summarize(millis(s.hub)), summarize(millis(s.direct)), summarize(millis(s.added))
		added := millis(s.added)
		slices.Sort(added)
		p90 := percentile(added, 90)
		p50[n] = as.P50
		key := strconv.Itoa(n) + "_tokens"
		res.detail(key+"_hub_ms", hs)
		res.detail(key+"_direct_ms", ds)
		res.detail(key+"_added_ms", as)
		res.detail(key+"_added_p90_ms", p90)
		res.detail(key+"_post_to_run_ms", summarize(millis(s.toRun)))
		res.detail(key+"_run_minus_direct_ms", summarize(millis(s.runAdded)))
		res.detail(key+"_run_return_to_result_read_ms", summarize(millis(s.after)))
		res.detail(key+"_run_return_to_job_done_logged_ms", summarize(millis(s.toDone)))
		res.add(row{Figure: fmt.Sprintf("llm job through hub + worker, %d tokens: added time p50", n), Value: as.P50, Unit: "ms"}.
			withBaseline("direct request p50", ds.P50).withGoal("≤ 10 ms", as.P50 <= 10))
		res.add(row{Figure: fmt.Sprintf("↳ %d tokens: added time p90", n), Value: p90, Unit: "ms"})
	}
	first, last := llmTokens[0], llmTokens[len(llmTokens)-1]
	slope := (p50[last] - p50[first]) / float64(last-first) * 1000
	res.detail("slope_ms_per_1000_tokens", slope)
	res.add(row{Figure: fmt.Sprintf("↳ slope of the added time p50, %d → %d tokens", first, last), Value: slope, Unit: "ms per 1,000 tokens"}.
		withGoal("flat: ≤ 1 ms per 1,000 tokens", slope <= 1))
	return res, nil
}
