// tap.go: a TCP tap between a worker and the hub that counts the bytes each way.

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"studioworker/protocol"
)

// tap is a TCP proxy in front of the hub. It counts the bytes each way and, on connections that
// upgraded to WebSocket, decodes the hub's frames for a callback, without changing a byte: the
// recovery figure counts complete_ack statuses with it and the idle figure counts bytes sent.
type tap struct {
	ln      net.Listener
	target  string
	onFrame func(protocol.Frame) // hub → worker frames; nil when only counting

	up   atomic.Int64 // worker → hub bytes
	down atomic.Int64 // hub → worker bytes

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newTap(target string, onFrame func(protocol.Frame)) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tap{ln: ln, target: target, onFrame: onFrame, conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

func (t *tap) URL() string { return "http://" + t.ln.Addr().String() }

func (t *tap) accept() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		if !t.track(c) {
			c.Close()
			return
		}
		t.wg.Add(1)
		go t.serve(c)
	}
}

func (t *tap) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tap) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// serve relays one connection. A hub that is down (killed, restarting) makes the dial fail: the
// worker's connection is closed at once, as a refused connection would be.
func (t *tap) serve(client net.Conn) {
	defer t.wg.Done()
	defer t.untrack(client)
	defer client.Close()
	server, err := net.Dial("tcp", t.target)
	if err != nil {
		return
	}
	if !t.track(server) {
		server.Close()
		return
	}
	defer t.untrack(server)
	defer server.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(server, &countingReader{r: client, n: &t.up})
		done <- struct{}{}
	}()
	go func() {
		var src io.Reader = &countingReader{r: server, n: &t.down}
		if t.onFrame != nil {
			src = io.TeeReader(src, &wsScanner{onFrame: t.onFrame})
		}
		_, _ = io.Copy(client, src)
		done <- struct{}{}
	}()
	// Either side ending ends the relay: closing both unblocks the other copy.
	<-done
	client.Close()
	server.Close()
	<-done
}

// cut drops every relayed connection at once (no close handshake), as a crashed hub would.
func (t *tap) cut() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}

// Close stops accepting, drops the open connections and waits for their goroutines.
func (t *tap) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.ln.Close()
	t.cut()
	t.wg.Wait()
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// wsScanner reads the server side of an HTTP connection: the response head, then, when it is a
// 101 upgrade, WebSocket frames (RFC 6455 §5.2), handing every complete text message to onFrame
// decoded by the protocol package. Anything it cannot follow turns it off; it never fails the relay.
type wsScanner struct {
	onFrame  func(protocol.Frame)
	buf      []byte
	upgraded bool
	off      bool
	msg      []byte // text message being reassembled from fragments
	inText   bool
}

// maxScanBuffer bounds what the scanner buffers: a frame of the contract is at most 1 MiB.
const maxScanBuffer = protocol.MaxFrameBytes + 64<<10

var errScanOff = errors.New("scanner off")

func (s *wsScanner) Write(p []byte) (int, error) {
	if s.off {
		return len(p), nil
	}
	s.buf = append(s.buf, p...)
	if !s.upgraded {
		end := bytes.Index(s.buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(s.buf) > 64<<10 {
				s.stop()
			}
			return len(p), nil
		}
		if !bytes.HasPrefix(s.buf, []byte("HTTP/1.1 101 ")) {
			s.stop() // a plain HTTP answer: keep-alive bodies are not followed
			return len(p), nil
		}
		s.upgraded = true
		s.buf = append(s.buf[:0], s.buf[end+4:]...)
	}
	for {
		n, err := s.frame()
		if err != nil {
			s.stop()
			break
		}
		if n == 0 {
			break
		}
		s.buf = s.buf[n:]
	}
	if len(s.buf) > maxScanBuffer {
		s.stop()
	}
	// Keep the unread tail at the front so the buffer does not creep.
	s.buf = append(s.buf[:0:0], s.buf...)
	return len(p), nil
}

func (s *wsScanner) stop() {
	s.off, s.buf, s.msg = true, nil, nil
}

// frame consumes one complete frame from buf and returns its length, 0 when more bytes are needed.
func (s *wsScanner) frame() (int, error) {
	b := s.buf
	if len(b) < 2 {
		return 0, nil
	}
	fin, opcode := b[0]&0x80 != 0, b[0]&0x0f
	masked := b[1]&0x80 != 0
	n, h := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, nil
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil
		}
		n, h = binary.BigEndian.Uint64(b[2:10]), 10
	}
	if n > maxScanBuffer {
		return 0, errScanOff
	}
	var key []byte
	if masked {
		if len(b) < h+4 {
			return 0, nil
		}
		key, h = b[h:h+4], h+4
	}
	total := h + int(n)
	if len(b) < total {
		return 0, nil
	}
	payload := b[h:total]
	if masked {
		payload = bytes.Clone(payload)
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	switch opcode {
	case 0x1: // text
		s.msg, s.inText = append(s.msg[:0], payload...), true
	case 0x0: // continuation
		if s.inText {
			s.msg = append(s.msg, payload...)
		}
	case 0x2: // binary: not part of the protocol, not followed
		s.inText = false
		return total, nil
	default: // close, ping, pong: control frames may come between fragments
		return total, nil
	}
	if fin && s.inText {
		s.inText = false
		if f, err := protocol.Decode(s.msg); err == nil {
			s.onFrame(f)
		}
		s.msg = s.msg[:0]
	}
	return total, nil
}
