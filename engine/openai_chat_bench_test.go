package engine

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

// BenchmarkReadChatStream reads a 2,048-token streamed answer in llama-server's format with the
// progress callback chat passes: the per-token cost of the stream's reading.
func BenchmarkReadChatStream(b *testing.B) {
	const n = 2048
	var stream bytes.Buffer
	for i := range n {
		fmt.Fprintf(&stream, `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" word%s"}}],"created":1700000000,"id":"chatcmpl-x","model":"m","system_fingerprint":"b1-x","object":"chat.completion.chunk"}`+"\n\n", strconv.Itoa(i%97))
	}
	stream.WriteString(`data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":"chat.completion.chunk"}` + "\n\n")
	stream.WriteString("data: [DONE]\n\n")
	raw := stream.Bytes()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		p := monotonic(func(float64, string) {})
		res, err := readChatStream(bytes.NewReader(raw), tokenProgress(p, n))
		if err != nil || res.Usage.CompletionTokens != n {
			b.Fatal(err, res.Usage)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/token")
}
