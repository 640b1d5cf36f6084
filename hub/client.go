// client.go: a small typed Go client of the hub's HTTP API (registration and the admin job API),
// for studio-hub's subcommands, the worker's demo and first run, benchmarks and tests. It speaks
// only HTTP and the protocol types: it must not reach into a Hub.

package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"studioworker/protocol"
)

// Client is a small typed client of the hub's HTTP API (registration and the admin job API).
type Client struct {
	BaseURL    string       // e.g. http://127.0.0.1:7860
	AdminToken string       // for the job API
	HTTP       *http.Client // nil: http.DefaultClient
}

// APIError is a non-2xx answer of the hub: its HTTP status and the hub's error text.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("hub answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) url(path string) string { return strings.TrimRight(c.BaseURL, "/") + path }

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	resp, err := c.send(ctx, method, path, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send returns a 2xx response (the caller closes its body) or an *APIError.
func (c *Client) send(ctx context.Context, method, path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	var he protocol.HTTPError
	if json.Unmarshal(b, &he) == nil && he.Error != "" {
		msg = he.Error
	}
	return nil, &APIError{StatusCode: resp.StatusCode, Message: msg}
}

func jsonBody(v any) (io.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

// PairingCode makes a single-use pairing code.
func (c *Client) PairingCode(ctx context.Context) (string, error) {
	var out protocol.PairingCodeResponse
	if err := c.do(ctx, http.MethodPost, protocol.PathPairingCodes, "", nil, &out); err != nil {
		return "", err
	}
	return out.PairingCode, nil
}

// Register registers a worker with a pairing code.
func (c *Client) Register(ctx context.Context, name, pairingCode string) (protocol.RegisterResponse, error) {
	var out protocol.RegisterResponse
	body, err := jsonBody(protocol.RegisterRequest{Name: name, PairingCode: pairingCode})
	if err != nil {
		return out, err
	}
	err = c.do(ctx, http.MethodPost, protocol.PathRegister, "application/json", body, &out)
	return out, err
}

// Submit queues a job and returns its id.
func (c *Client) Submit(ctx context.Context, req protocol.JobRequest) (string, error) {
	body, err := jsonBody(req)
	if err != nil {
		return "", err
	}
	var out protocol.JobCreated
	if err := c.do(ctx, http.MethodPost, protocol.PathJobs, "application/json", body, &out); err != nil {
		return "", err
	}
	return out.JobID, nil
}

// SubmitWithFile queues a job with an input file (stt), streaming r as the input_file part.
func (c *Client) SubmitWithFile(ctx context.Context, req protocol.JobRequest, filename string, r io.Reader) (string, error) {
	jobJSON, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		err := mw.WriteField("job", string(jobJSON))
		if err == nil {
			var part io.Writer
			if part, err = mw.CreateFormFile("input_file", filename); err == nil {
				if _, err = io.Copy(part, r); err == nil {
					err = mw.Close()
				}
			}
		}
		pw.CloseWithError(err)
	}()
	var out protocol.JobCreated
	err = c.do(ctx, http.MethodPost, protocol.PathJobs, mw.FormDataContentType(), pr, &out)
	pr.CloseWithError(errors.New("request ended")) // stops the writer if the request failed early
	<-wrote
	if err != nil {
		return "", err
	}
	return out.JobID, nil
}

// Job returns a job's state.
func (c *Client) Job(ctx context.Context, id string) (protocol.JobInfo, error) {
	var out protocol.JobInfo
	err := c.do(ctx, http.MethodGet, protocol.PathJobs+"/"+url.PathEscape(id), "", nil, &out)
	return out, err
}

// Jobs lists the most recent jobs first (GET /v1/jobs, an extension of the contract).
func (c *Client) Jobs(ctx context.Context) ([]protocol.JobInfo, error) {
	var out []protocol.JobInfo
	err := c.do(ctx, http.MethodGet, protocol.PathJobs, "", nil, &out)
	return out, err
}

// Result writes a completed job's result to w and returns its content type.
func (c *Client) Result(ctx context.Context, id string, w io.Writer) (string, error) {
	resp, err := c.send(ctx, http.MethodGet, protocol.PathJobs+"/"+url.PathEscape(id)+"/result", "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return "", fmt.Errorf("read result of %s: %w", id, err)
	}
	return resp.Header.Get("Content-Type"), nil
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, protocol.PathJobs+"/"+url.PathEscape(id)+"/cancel", "", nil, nil)
}

// Revoke ends a worker's access (DELETE /v1/workers/{id}).
func (c *Client) Revoke(ctx context.Context, workerID string) error {
	return c.do(ctx, http.MethodDelete, protocol.PathWorkers+"/"+url.PathEscape(workerID), "", nil, nil)
}

// Workers lists the registered workers.
func (c *Client) Workers(ctx context.Context) ([]protocol.WorkerInfo, error) {
	var out []protocol.WorkerInfo
	err := c.do(ctx, http.MethodGet, protocol.PathWorkers, "", nil, &out)
	return out, err
}

// WaitJob polls a job until its status is final or ctx ends.
func (c *Client) WaitJob(ctx context.Context, id string) (protocol.JobInfo, error) {
	delay := 20 * time.Millisecond
	for {
		info, err := c.Job(ctx, id)
		if err != nil {
			return info, err
		}
		if info.Status.Done() {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("wait for job %s (%s): %w", id, info.Status, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}
