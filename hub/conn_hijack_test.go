// conn_hijack_test.go: the session's own buffers after the upgrade (hijackKeeper) keep what a
// worker sent before it read the 101: a hello written in the same packet as the upgrade request
// is answered with welcome. It must not know what comes after welcome.

package hub

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

// maskedTextFrame is a client's text frame (RFC 6455 §5.2), masked as a client's must be.
func maskedTextFrame(payload []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	out := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n < 1<<16:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

// readServerFrame reads one unmasked frame from the server and returns its payload.
func readServerFrame(br *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return p, err
}

func TestConnHelloSentWithTheUpgradeRequestIsRead(t *testing.T) {
	e := startHub(t, nil)
	creds := e.register("early")
	hb, err := protocol.Encode(hello(llmCaps, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n"+
		"Authorization: Bearer %s\r\n%s: %s\r\n\r\n",
		protocol.PathWorkerWS, protocol.Subprotocol, creds.AuthToken, protocol.HeaderWorkerID, creds.WorkerID)
	// One write: the hello is in the server's request reader before the upgrade is answered.
	if _, err := c.Write(append([]byte(req), maskedTextFrame(hb)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read the upgrade's answer: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	p, err := readServerFrame(br)
	if err != nil {
		t.Fatalf("no frame after the upgrade: %v", err)
	}
	f, err := protocol.Decode(p)
	if err != nil {
		t.Fatalf("decode %q: %v", p, err)
	}
	if w, ok := f.(protocol.Welcome); !ok || w.WorkerID != creds.WorkerID {
		t.Fatalf("got %#v, want welcome for %s", f, creds.WorkerID)
	}
}
