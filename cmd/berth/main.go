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
	"syscall"

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
		fmt.Fprintln(stderr, "usage: berth config default")
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
	daemon.RouteContainerdLogs(logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, cfg, logger, nil); err != nil {
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
