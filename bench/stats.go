// stats.go: percentiles and summaries of a figure's samples.

package main

import (
	"math"
	"slices"
	"time"
)

// summary is the distribution of one figure's samples.
type summary struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
}

// summarize sorts a copy of xs and reads its percentiles by nearest rank: with few rounds, p99 is
// the worst round, which is the honest reading of "p99 over rounds".
func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	return summary{
		N:    len(s),
		P50:  percentile(s, 50),
		P99:  percentile(s, 99),
		Max:  s[len(s)-1],
		Min:  s[0],
		Mean: sum / float64(len(s)),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted (ascending) values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// millis converts durations to milliseconds, the unit latencies are reported in.
func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}
