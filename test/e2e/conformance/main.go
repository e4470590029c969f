// Command conformance runs critest v1.37.0 against berth, hermetically: it
// builds the test images from Debian's busybox, serves them from a registry
// on loopback behind a hosts.toml mirror directory, starts berth with a
// private root, runs critest, and checks the outcome against the
// expectations file. It exits non-zero when any spec's outcome differs from
// what the file says.
//
//	go run ./test/e2e/conformance -berth bin/berth -testbin bin/testbin
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "conformance: "+format+"\n", args...)
}

type options struct {
	berth, testbin, cache, expectations, reportDir string
	focus, skip                                    string
	cniBinDirs                                     string
	extraConfig, handler, runtimeConfig            string
	printFailing                                   bool
}

func main() {
	var o options
	flag.StringVar(&o.berth, "berth", "bin/berth", "berth binary under test")
	flag.StringVar(&o.testbin, "testbin", "bin/testbin", "static test/e2e/testbin binary for the images")
	flag.StringVar(&o.cache, "cache", "/var/cache/berth-e2e", "cache for crictl, critest and the busybox package")
	flag.StringVar(&o.expectations, "expectations", "test/e2e/critest-expectations.txt", "specs expected not to pass, with reasons")
	flag.StringVar(&o.reportDir, "report-dir", "_output/critest", "where critest's JUnit and JSON reports and logs go")
	flag.StringVar(&o.focus, "focus", "", "only run specs matching this regular expression (no expectations check)")
	flag.StringVar(&o.skip, "skip", "", "skip specs matching this regular expression (no expectations check)")
	flag.StringVar(&o.cniBinDirs, "cni-bin-dirs", "/usr/lib/cni", "CNI plugin directories, colon-separated")
	flag.StringVar(&o.handler, "handler", "", "default RuntimeClass handler of the daemon (runc, crun, runc-upstream; default $BERTH_E2E_HANDLER, else runc)")
	flag.StringVar(&o.runtimeConfig, "runtime-config", "", "TOML keys added to the daemon's [runtime] table, e.g. 'pause_container = true'")
	flag.StringVar(&o.extraConfig, "extra-config", "", "TOML tables appended to the daemon's config")
	flag.BoolVar(&o.printFailing, "print-failing", false, "print every spec that did not pass, for editing the expectations file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		logf("FAIL: %v", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	for _, p := range []*string{&o.berth, &o.testbin, &o.expectations, &o.reportDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if o.handler == "" {
		o.handler = e2eenv.DefaultHandler()
	}
	exp, err := readExpectations(o.expectations, o.handler)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.reportDir, 0o755); err != nil {
		return err
	}
	crictl, err := e2eenv.EnsureCrictl(ctx, o.cache)
	if err != nil {
		return err
	}
	critest, err := e2eenv.EnsureCritest(ctx, o.cache)
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "berth-conformance-")
	if err != nil {
		return err
	}
	defer func() {
		// Never delete through a mount berth failed to remove.
		if leaks, _ := e2eenv.Leaks(work); len(leaks) == 0 {
			os.RemoveAll(work)
		}
	}()

	reg, err := e2eenv.ServeTestImages(ctx, o.cache, o.testbin, filepath.Join(work, "hosts"))
	if err != nil {
		return err
	}
	defer reg.Close()
	hosts := reg.HostsDir
	logf("built and pushed %d test images to %s in %s", len(reg.Images), reg.Host, reg.BuildTime.Round(time.Millisecond))

	netd := filepath.Join(work, "net.d")
	if err := e2eenv.WriteCNIConfig(netd); err != nil {
		return err
	}
	d, err := e2eenv.StartDaemon(ctx, e2eenv.DaemonOptions{
		Binary:             o.berth,
		Dir:                work,
		RegistryConfigPath: hosts,
		CNIConfDir:         netd,
		CNIBinDirs:         strings.Split(o.cniBinDirs, ":"),
		ExtraConfig:        o.extraConfig,
		Handler:            o.handler,
		RuntimeConfig:      o.runtimeConfig,
		// critest holds a plugin's Synchronize open for 2 s on purpose
		// (its sync-race specs) and must not see the plugin dropped for
		// it: a request timeout above that, where containerd's default 2 s
		// makes both specs skip.
		NRIConfig: `plugin_request_timeout = "5s"`,
	})
	if err != nil {
		return err
	}
	runErr := crictlVersion(ctx, crictl, d.Socket)
	if runErr == nil {
		runErr = runCritest(ctx, critest, d.Socket, d.NRISocket, o)
	}
	if err := removeLeftoverPods(ctx, d.Socket); err != nil && runErr == nil {
		runErr = err
	}
	stopErr := d.Stop()
	if leaks, err := e2eenv.Leaks(work); err != nil || len(leaks) > 0 {
		if runErr == nil {
			runErr = fmt.Errorf("berth leaked after removing every pod (%v):\n  %s", err, strings.Join(leaks, "\n  "))
		}
	}
	if err := copyFile(d.LogPath, filepath.Join(o.reportDir, "berth.log")); err != nil {
		logf("keeping berth's log: %v", err)
	}
	if runErr != nil {
		return runErr
	}
	if stopErr != nil {
		return fmt.Errorf("stopping berth after critest: %w", stopErr)
	}
	return judge(o, exp)
}

// removeLeftoverPods removes the pods critest left behind (a failed spec
// skips its cleanup), through CRI, so the leak check after it is meaningful.
func removeLeftoverPods(ctx context.Context, socket string) error {
	n, err := e2eenv.RemoveAllPods(ctx, socket)
	if err != nil {
		return fmt.Errorf("pods left by critest: %w", err)
	}
	if n > 0 {
		logf("removed %d pods critest left behind", n)
	}
	return nil
}

// crictlVersion checks what a user's first command shows: crictl version
// names berth and CRI v1.
func crictlVersion(ctx context.Context, crictl, socket string) error {
	out, err := exec.CommandContext(ctx, crictl, "--runtime-endpoint", "unix://"+socket, "version").Output()
	if err != nil {
		return fmt.Errorf("crictl version: %w", err)
	}
	for _, want := range []string{"RuntimeName:  berth", "RuntimeApiVersion:  v1"} {
		if !strings.Contains(string(out), want) {
			return fmt.Errorf("crictl version does not print %q:\n%s", want, out)
		}
	}
	logf("crictl version: %s", strings.Join(strings.Fields(string(out)), " "))
	return nil
}

// runCritest runs critest with reports in o.reportDir. critest's own exit
// status is not the verdict (it fails whenever any spec fails); the
// expectations are.
func runCritest(ctx context.Context, critest, socket, nriSocket string, o options) error {
	logPath := filepath.Join(o.reportDir, "critest.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := []string{
		"-runtime-endpoint", "unix://" + socket,
		"-image-endpoint", "unix://" + socket,
		"-nri-socket", nriSocket,
		"-ginkgo.junit-report", filepath.Join(o.reportDir, "junit.xml"),
		"-ginkgo.json-report", filepath.Join(o.reportDir, "report.json"),
		"-ginkgo.no-color",
		"-ginkgo.timeout", "80m",
	}
	if o.focus != "" {
		args = append(args, "-ginkgo.focus", o.focus)
	}
	if o.skip != "" {
		args = append(args, "-ginkgo.skip", o.skip)
	}
	logf("running critest %s (output in %s)", e2eenv.CriToolsVersion, logPath)
	start := time.Now()
	cmd := exec.CommandContext(ctx, critest, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = o.reportDir
	err = cmd.Run()
	logf("critest finished in %s (%v)", time.Since(start).Round(time.Second), err)
	if _, statErr := os.Stat(filepath.Join(o.reportDir, "report.json")); statErr != nil {
		return fmt.Errorf("critest wrote no report (%v); see %s", err, logPath)
	}
	return nil
}

// specResult is one spec's outcome in critest's JSON report.
type specResult struct {
	name  string
	state string
}

func readReport(path string) ([]specResult, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reports []struct {
		SpecReports []struct {
			ContainerHierarchyTexts []string
			LeafNodeType            string
			LeafNodeText            string
			State                   string
			NumAttempts             int
		}
	}
	if err := json.Unmarshal(raw, &reports); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var out []specResult
	for _, r := range reports {
		for _, s := range r.SpecReports {
			// Specs the suite did not select (the benchmarks, which need
			// -benchmark) are reported skipped with no attempt: not ours.
			if s.LeafNodeType != "It" || s.NumAttempts == 0 {
				continue
			}
			name := strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " ")
			out = append(out, specResult{name: name, state: s.State})
		}
	}
	return out, nil
}

func judge(o options, exp expectations) error {
	results, err := readReport(filepath.Join(o.reportDir, "report.json"))
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, r := range results {
		counts[r.state]++
	}
	other := len(results) - counts["passed"] - counts["failed"] - counts["skipped"]
	fmt.Printf("critest %s: %d passed, %d failed, %d skipped", e2eenv.CriToolsVersion, counts["passed"], counts["failed"], counts["skipped"])
	if other > 0 {
		fmt.Printf(", %d other (%v)", other, counts)
	}
	fmt.Println()
	if o.printFailing {
		var names []string
		for _, r := range results {
			if r.state != "passed" {
				names = append(names, r.name)
			}
		}
		sort.Strings(names)
		fmt.Println(strings.Join(names, "\n"))
	}
	if o.focus != "" || o.skip != "" {
		fmt.Println("expectations: not checked (a focused or skipped run)")
		return nil
	}
	v := compare(results, exp)
	if !v.ok() {
		v.print(os.Stdout)
		fmt.Println("expectations: MISMATCH")
		return fmt.Errorf("critest outcome differs from %s", o.expectations)
	}
	fmt.Printf("expectations: match (%d specs listed as not passing yet)\n", len(exp))
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
