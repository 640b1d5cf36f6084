// Command bench is Studio Worker's benchmark harness (`./build.sh bench`). It builds and runs the
// real studio-hub as its own process, runs real workers (app.Worker with its session and the
// synthetic engine, in this process or as a headless worker process where memory and CPU are
// measured), and measures each figure of the performance issue beside a bare baseline measured in
// the same run: the table gives the ratio, which holds on a noisy machine when the absolute
// numbers do not. It prints the table and writes bench/results/latest.json; with --compare it
// also prints each figure beside an earlier results file, and `bench compare OLD NEW` does only
// that, running nothing.
//
// It is a program, not a test, and nothing imports it: it may use every package of the module,
// and no package may depend on it or carry code that exists only for it. Everything it starts
// (processes, sockets, files in its temporary folder) ends before it exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case workerModeArg:
			os.Exit(runWorkerMode(os.Args[2:]))
		case hubModeArg:
			os.Exit(runHubMode(os.Args[2:]))
		case compareArg:
			os.Exit(runCompare(os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:]))
}

// env is what every figure shares: where things are, the sizes of this run, an HTTP client.
type env struct {
	root   string // the module's folder
	tmp    string // this run's temporary folder
	self   string // this binary, re-executed in worker mode
	hubBin string // studio-hub built for this run
	pprof  string // with --pprof: the folder for CPU profiles (the hubs then run in hub mode)
	hubs   int    // hubs started, to name their profiles
	http   *http.Client
	log    *slog.Logger // progress, on stderr
	size   sizes
}

// dir makes a fresh folder for one part of the run.
func (e *env) dir(name string) (string, error) {
	d := filepath.Join(e.tmp, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	return d, nil
}

// sizes are the rounds and amounts of one run: the full run follows the issue; --quick is for
// iterating on the harness and its figures are not comparable.
type sizes struct {
	echoRounds       int
	dispatchJobs     int
	throughputJobs   int
	throughputRounds int
	uploadBytes      int64
	uploadRounds     int
	idle             time.Duration
	scaleWorkers     int
	scaleOffers      time.Duration
	recoveryJobs     int
	recoveryWorkers  int
	llmRounds        int
	hostileConns     int
	hostileOffers    time.Duration
	replicaJobs      int
	replicaRounds    int
	replicaOffers    time.Duration
}

func fullSizes() sizes {
	return sizes{
		echoRounds: 2000, dispatchJobs: 2000,
		throughputJobs: 2000, throughputRounds: 3,
		uploadBytes: 1 << 30, uploadRounds: 3,
		idle:         60 * time.Second,
		scaleWorkers: 10000, scaleOffers: 10 * time.Second,
		recoveryJobs: 2000, recoveryWorkers: 8,
		llmRounds:    30,
		hostileConns: 10000, hostileOffers: 5 * time.Second,
		replicaJobs: 2000, replicaRounds: 3, replicaOffers: 5 * time.Second,
	}
}

func quickSizes() sizes {
	return sizes{
		echoRounds: 300, dispatchJobs: 300,
		throughputJobs: 400, throughputRounds: 2,
		uploadBytes: 64 << 20, uploadRounds: 2,
		idle:         10 * time.Second,
		scaleWorkers: 200, scaleOffers: 3 * time.Second,
		recoveryJobs: 400, recoveryWorkers: 8,
		llmRounds:    5,
		hostileConns: 1000, hostileOffers: 2 * time.Second,
		replicaJobs: 300, replicaRounds: 2, replicaOffers: 2 * time.Second,
	}
}

// figure is one row group of the table.
type figure struct {
	name string
	run  func(ctx context.Context, e *env) (figureResult, error)
}

func figures() []figure {
	return []figure{
		{"dispatch", runDispatch},
		{"throughput", runThroughput},
		{"upload", runUpload},
		{"idle", runIdle},
		{"idle_gui", runIdleGUI},
		{"scale", runScale},
		{"recovery", runRecovery},
		{"llm", runLLM},
		{"hostile", runHostile},
		{"replicas", runReplicas},
	}
}

func run(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	only := fs.String("only", "", "comma-separated figures to run: "+strings.Join(figureNames(), ","))
	quick := fs.Bool("quick", false, "small rounds, for iterating on the harness (figures not comparable)")
	out := fs.String("out", "", "results file (default: bench/results/latest.json for a full run of every figure, none otherwise)")
	markdown := fs.Bool("markdown", false, "also print the table as Markdown (for docs/performance.md)")
	keep := fs.Bool("keep", false, "keep the temporary folder (hub logs and databases) for inspection")
	into := fs.String("into", "", "merge the figures run into this results file (e.g. bench/results/latest.json): each replaces the figure of its name, the others stay")
	profDir := fs.String("pprof", "", "write CPU profiles of this process and of every hub (run from this binary's hub mode) to this folder")
	compare := fs.String("compare", "", "after the table, print each figure run beside the same figure of this earlier results file (read before the run, so it may be the file --out or --into writes)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	selected, err := selectFigures(*only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	// Read now, not after the run: a file that cannot be read should not cost a run, and the run
	// may overwrite it.
	var earlier *report
	if *compare != "" {
		if earlier, err = readReport(*compare); err != nil {
			fmt.Fprintln(os.Stderr, "bench: --compare:", err)
			return 2
		}
	}
	complete := len(selected) == len(figures()) && !*quick
	if *out == "" && complete {
		*out = filepath.Join("bench", "results", "latest.json")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, cleanup, err := setup(ctx, log, *quick)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if *profDir != "" {
		stopProfile, err := startProfiling(e, *profDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer stopProfile()
	}
	if *keep {
		log.Info("keeping the temporary folder", "dir", e.tmp)
	} else {
		defer cleanup()
	}

	rep := newReport(ctx, e, *quick)
	start := time.Now()
	failed := false
	for _, f := range selected {
		if ctx.Err() != nil {
			break
		}
		load := loadAvg()
		log.Info("figure", "name", f.name, "load_avg", load)
		t0 := time.Now()
		res, err := f.run(ctx, e)
		res.Name, res.Seconds, res.LoadAvg = f.name, time.Since(t0).Seconds(), load
		if err != nil {
			failed = true
			res.Err = err.Error()
			log.Error("figure failed", "name", f.name, "err", err)
		}
		if res.Skipped != "" {
			log.Warn("figure skipped", "name", f.name, "why", res.Skipped)
		}
		rep.Figures = append(rep.Figures, res)
	}
	rep.Seconds = time.Since(start).Seconds()
	rep.print(os.Stdout)
	if *markdown {
		fmt.Println()
		rep.printMarkdown(os.Stdout)
	}
	if earlier != nil {
		c := compareReports(rep, earlier, "this run", *compare)
		fmt.Println()
		c.print(os.Stdout)
		if *markdown {
			fmt.Println()
			c.printMarkdown(os.Stdout)
		}
	}
	if *into != "" {
		if err := mergeInto(*into, rep); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		log.Info("figures merged", "file", *into)
	}
	if *out != "" {
		if err := rep.write(*out); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		log.Info("results written", "file", *out)
	}
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

// compareArg is the subcommand that compares two results files and runs nothing:
// `bench compare [--only a,b] [--markdown] OLD.json NEW.json`, old first as in diff.
const compareArg = "compare"

func runCompare(args []string) int {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: bench compare [--only a,b] [--markdown] OLD.json NEW.json")
		fs.PrintDefaults()
	}
	only := fs.String("only", "", "comma-separated figures of NEW to compare: "+strings.Join(figureNames(), ","))
	markdown := fs.Bool("markdown", false, "also print the comparison as Markdown (for docs/performance.md and the README)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	c, err := compareFiles(fs.Arg(0), fs.Arg(1), *only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench compare:", err)
		return 2
	}
	c.print(os.Stdout)
	if *markdown {
		fmt.Println()
		c.printMarkdown(os.Stdout)
	}
	return 0
}

func figureNames() []string {
	var names []string
	for _, f := range figures() {
		names = append(names, f.name)
	}
	return names
}

func selectFigures(only string) ([]figure, error) {
	all := figures()
	if strings.TrimSpace(only) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slices.Contains(figureNames(), n) {
			return nil, fmt.Errorf("--only: unknown figure %q (figures: %s)", n, strings.Join(figureNames(), ", "))
		}
		want[n] = true
	}
	var out []figure
	for _, f := range all {
		if want[f.name] {
			out = append(out, f)
		}
	}
	return out, nil
}

// setup makes the run's folder and builds studio-hub into it.
func setup(ctx context.Context, log *slog.Logger, quick bool) (*env, func(), error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find this binary: %w", err)
	}
	tmp, err := os.MkdirTemp("", "studio-bench-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		if err := os.RemoveAll(tmp); err != nil {
			log.Warn("remove the temporary folder", "dir", tmp, "err", err)
		}
	}
	log.Info("building studio-hub", "dir", tmp)
	bin, err := buildHub(ctx, root, tmp)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	e := &env{root: root, tmp: tmp, self: self, hubBin: bin, http: newHTTPClient(), log: log, size: fullSizes()}
	if quick {
		e.size = quickSizes()
	}
	return e, cleanup, nil
}

// startProfiling profiles this process into dir/bench.cpu.pprof until the returned func runs, and
// makes every hub started from now on write dir/hub-<n>.cpu.pprof.
func startProfiling(e *env, dir string) (func(), error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(abs, "bench.cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	e.pprof = abs
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
