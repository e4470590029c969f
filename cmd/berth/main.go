// Command berth is a Kubernetes CRI runtime: `berth` (or `berth daemon`)
// serves the CRI v1 API on a unix socket. This file only wires flags and
// config to the daemon and the other subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/berth-cri/berth/internal/check"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/daemon"
	"github.com/berth-cri/berth/internal/version"
)

const usage = `berth — a Kubernetes CRI v1 runtime

Usage:
  berth [flags]              serve CRI (same as "berth daemon")
  berth daemon [flags]       serve CRI on --address
  berth check [--config F]   check host prerequisites and say how to fix them
  berth config default       print the default config, with comments
  berth config reload [--config F] [--state DIR]
                             make the running daemon reload its config (as SIGHUP
                             does) and print what changed; exit 1 if it refused
  berth version              print the version (also: berth --version)

Daemon flags (they override the config file):
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "daemon"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "daemon":
		return runDaemon(args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "config":
		if len(args) == 1 && args[0] == "default" {
			stdout.Write(config.DefaultTOML())
			return 0
		}
		if len(args) >= 1 && args[0] == "reload" {
			return runReload(args[1:], stdout, stderr)
		}
		fmt.Fprintln(stderr, "usage: berth config default | berth config reload [--config F] [--state DIR]")
		return 2
	case "version":
		fmt.Fprintf(stdout, "berth %s\n", version.String())
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		newDaemonFlags(stdout).fs.PrintDefaults()
		return 0
	default:
		fmt.Fprintf(stderr, "berth: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

type daemonFlags struct {
	fs                           *flag.FlagSet
	config, address, root, state *string
	logLevel, logFormat          *string
	version                      *bool
}

func newDaemonFlags(out io.Writer) daemonFlags {
	fs := flag.NewFlagSet("berth", flag.ContinueOnError)
	fs.SetOutput(out)
	def := config.Default()
	f := daemonFlags{
		fs:        fs,
		config:    fs.String("config", config.DefaultPath, "config file (TOML); a missing default file means defaults"),
		address:   fs.String("address", def.Address, "unix socket to serve CRI on"),
		root:      fs.String("root", def.Root, "directory for persistent state"),
		state:     fs.String("state", def.State, "directory for runtime state"),
		logLevel:  fs.String("log-level", def.Log.Level, "log level: debug, info, warn, error"),
		logFormat: fs.String("log-format", def.Log.Format, "log format: text or json"),
		version:   fs.Bool("version", false, "print the version and exit"),
	}
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	return f
}

// load parses args and returns the config: defaults, then the file, then any
// flag given explicitly.
func (f daemonFlags) load(args []string) (config.Config, error) {
	if err := f.fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if f.fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected arguments: %v", f.fs.Args())
	}
	return f.read()
}

// read builds the config from the file and the flags parsed before: at
// start, and again at each reload (the flags given at start keep winning).
func (f daemonFlags) read() (config.Config, error) {
	explicit := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { explicit[fl.Name] = true })
	cfg, err := config.Load(*f.config, !explicit["config"])
	if err != nil {
		return config.Config{}, err
	}
	for name, o := range map[string]struct{ dst, src *string }{
		"address":    {&cfg.Address, f.address},
		"root":       {&cfg.Root, f.root},
		"state":      {&cfg.State, f.state},
		"log-level":  {&cfg.Log.Level, f.logLevel},
		"log-format": {&cfg.Log.Format, f.logFormat},
	} {
		if explicit[name] {
			*o.dst = *o.src
		}
	}
	return cfg, cfg.Validate()
}

func runDaemon(args []string, stdout, stderr io.Writer) int {
	// No heap profile sampling unless profiles are served (debug.address
	// turns it on): it costs the daemon half a megabyte.
	runtime.MemProfileRate = 0
	f := newDaemonFlags(stderr)
	cfg, err := f.load(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if *f.version {
		fmt.Fprintf(stdout, "berth %s\n", version.String())
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "berth: %v\n", err)
		return 2
	}
	logger, err := daemon.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "berth: %v\n", err)
		return 2
	}
	daemon.RouteContainerdLogs(logger.Logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, daemon.Options{Config: cfg, Logger: logger, Load: f.read}); err != nil {
		logger.Error("berth exited", "error", err)
		return 1
	}
	return 0
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berth check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "config file (TOML)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	explicit := false
	fs.Visit(func(fl *flag.Flag) { explicit = explicit || fl.Name == "config" })
	cfg, err := config.Load(*path, !explicit)
	if err != nil {
		fmt.Fprintf(stderr, "berth: %v\n", err)
		return 2
	}
	if !check.Print(stdout, check.Run(context.Background(), cfg)) {
		return 1
	}
	return 0
}

// runReload signals the daemon serving the state directory (from the config
// file, or --state) to reload, and reports the result it writes.
func runReload(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berth config reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "config file (TOML) naming the daemon's state directory")
	state := fs.String("state", "", "the daemon's state directory (default: from the config file)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the daemon's answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *state == "" {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
		cfg, err := config.Load(*path, !explicit)
		if err != nil {
			fmt.Fprintf(stderr, "berth config reload: %v\n", err)
			return 2
		}
		*state = cfg.State
	}
	res, err := daemon.RequestReload(*state, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "berth config reload: %v\n", err)
		return 1
	}
	if !res.OK {
		fmt.Fprintf(stderr, "berth config reload: refused, nothing changed: %s\n", res.Error)
		return 1
	}
	if len(res.Changed) == 0 && len(res.NeedsRestart) == 0 {
		fmt.Fprintln(stdout, "config reloaded: nothing changed")
	}
	for _, c := range res.Changed {
		fmt.Fprintf(stdout, "changed: %s\n", c)
	}
	for _, k := range res.NeedsRestart {
		fmt.Fprintf(stdout, "needs a restart: %s\n", k)
	}
	return 0
}
