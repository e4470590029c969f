// Package config holds berth's configuration: its defaults, the TOML file that
// overrides them, and validation. A Config is passed down explicitly; nothing
// reads configuration from package state.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the daemon looks for its config file when --config is
// not given. A missing file at this path means "use the defaults".
const DefaultPath = "/etc/berth/config.toml"

// Config is berth's whole configuration. The TOML keys are the names users
// and tests rely on (registry.config_path, cni.conf_dir, cni.bin_dirs).
type Config struct {
	// Address is the unix socket the CRI gRPC server listens on.
	Address string `toml:"address" json:"address"`
	// Root holds persistent state: the metadata DB, content and snapshots.
	Root string `toml:"root" json:"root"`
	// State holds runtime state that dies with the machine: sockets, pinned
	// namespaces, bundles.
	State string `toml:"state" json:"state"`

	Log      Log      `toml:"log" json:"log"`
	Registry Registry `toml:"registry" json:"registry"`
	Image    Image    `toml:"image" json:"image"`
	CNI      CNI      `toml:"cni" json:"cni"`
	Runtime  Runtime  `toml:"runtime" json:"runtime"`
	Stream   Stream   `toml:"streaming" json:"streaming"`
	CDI      CDI      `toml:"cdi" json:"cdi"`
	// Checkpoint configures container checkpointing (CRIU).
	Checkpoint Checkpoint `toml:"checkpoint" json:"checkpoint"`
	Metrics    Metrics    `toml:"metrics" json:"metrics"`
	Tracing    Tracing    `toml:"tracing" json:"tracing"`
	Debug      Debug      `toml:"debug" json:"debug"`
	// NRI configures Node Resource Interface plugins.
	NRI NRI `toml:"nri" json:"nri"`
	// ShutdownTimeout bounds how long in-flight calls may take to finish
	// after SIGTERM before the server is stopped hard.
	ShutdownTimeout Duration `toml:"shutdown_timeout" json:"shutdown_timeout"`
}

// Log configures the daemon's own log.
type Log struct {
	Level  string `toml:"level" json:"level"`   // debug, info, warn, error
	Format string `toml:"format" json:"format"` // text or json
}

// Registry configures image pulls.
type Registry struct {
	// ConfigPath is a directory in containerd's hosts.toml layout:
	// <dir>/<host>/hosts.toml, with <dir>/_default/hosts.toml as fallback.
	ConfigPath string `toml:"config_path" json:"config_path"`
}

// Image configures image storage and pulls.
type Image struct {
	// Snapshotter is "overlayfs" or "native" (for hosts without overlayfs).
	Snapshotter string `toml:"snapshotter" json:"snapshotter"`
	// MaxConcurrentDownloads bounds parallel layer fetches per pull.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads" json:"max_concurrent_downloads"`
	// PullProgressTimeout aborts a pull that receives no bytes for this long
	// (0 disables the check).
	PullProgressTimeout Duration `toml:"pull_progress_timeout" json:"pull_progress_timeout"`
	// SandboxImage is reported as pinned, so kubelet never collects it.
	SandboxImage string `toml:"sandbox_image" json:"sandbox_image"`
}

// CNI configures pod networking.
type CNI struct {
	ConfDir string   `toml:"conf_dir" json:"conf_dir"`
	BinDirs []string `toml:"bin_dirs" json:"bin_dirs"`
	// DefaultNetwork makes berth write its own bridge network into ConfDir
	// when the directory holds none (and follow the pod CIDR kubelet sets).
	DefaultNetwork bool `toml:"default_network" json:"default_network"`
}

// Runtime configures the OCI runtime and cgroups.
type Runtime struct {
	// DefaultHandler is the handler of pods whose RunPodSandbox names none.
	DefaultHandler string `toml:"default_handler" json:"default_handler"`
	// Handlers are the RuntimeClass handlers, by name.
	Handlers map[string]Handler `toml:"handlers" json:"handlers"`
	// MonitorPath is the berth-monitor binary; "" means the one next to the
	// berth executable, else berth-monitor in PATH.
	MonitorPath string `toml:"monitor_path" json:"monitor_path"`
	// CgroupDriver is "cgroupfs", "systemd", or "" to pick systemd when the
	// host runs systemd and cgroupfs otherwise.
	CgroupDriver string `toml:"cgroup_driver" json:"cgroup_driver"`
	// PauseContainer runs image.sandbox_image in every pod as an infra
	// container, the classic layout, for tools that expect one.
	PauseContainer bool `toml:"pause_container" json:"pause_container"`
}

// Handler is one RuntimeClass handler: an OCI runtime with runc's command
// line (runc, crun).
type Handler struct {
	// Path is the runtime binary, absolute or looked up in PATH.
	Path string `toml:"path" json:"path"`
	// UsernsPath, when set, is a runtime the handler runs instead of
	// Path's when Path's cannot run pods in user namespaces (no idmapped
	// mounts: runc before 1.2) and this one can. Chosen once at start.
	UsernsPath string `toml:"userns_path" json:"userns_path"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Address is host:port where /metrics is served; empty serves none. A
	// missing host (":9345") means loopback.
	Address string `toml:"address" json:"address"`
}

// Tracing configures OpenTelemetry traces.
type Tracing struct {
	// Endpoint is the OTLP/gRPC collector (host:port); empty leaves it to
	// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, and with neither there is no
	// tracing.
	Endpoint string `toml:"endpoint" json:"endpoint"`
	// Insecure sends spans without TLS.
	Insecure bool `toml:"insecure" json:"insecure"`
	// SamplingRatio samples traces that start in berth (a caller's
	// sampling decision is followed); OTEL_TRACES_SAMPLER overrides it.
	SamplingRatio float64 `toml:"sampling_ratio" json:"sampling_ratio"`
	// ServiceName is the service.name of berth's spans.
	ServiceName string `toml:"service_name" json:"service_name"`
}

// Debug configures the profiling endpoint.
type Debug struct {
	// Address is a loopback host:port where /debug/pprof/ is served;
	// empty serves none.
	Address string `toml:"address" json:"address"`
}

// NRI configures Node Resource Interface plugins (internal/nri).
type NRI struct {
	// Enable serves plugins; without it no plugin sees any pod.
	Enable bool `toml:"enable" json:"enable"`
	// SocketPath is where plugins connect.
	SocketPath string `toml:"socket_path" json:"socket_path"`
	// PluginPath holds pre-installed plugins berth starts (NN-name files).
	PluginPath string `toml:"plugin_path" json:"plugin_path"`
	// PluginConfigPath holds their configuration (NN-name.conf or name.conf).
	PluginConfigPath string `toml:"plugin_config_path" json:"plugin_config_path"`
	// RegistrationTimeout bounds a plugin's registration.
	RegistrationTimeout Duration `toml:"plugin_registration_timeout" json:"plugin_registration_timeout"`
	// RequestTimeout bounds each event a plugin handles; one that takes
	// longer is disconnected and the call goes on without it.
	RequestTimeout Duration `toml:"plugin_request_timeout" json:"plugin_request_timeout"`
}

// Checkpoint configures CheckpointContainer.
type Checkpoint struct {
	// CRIUPath is the CRIU binary, absolute or looked up in PATH.
	CRIUPath string `toml:"criu_path" json:"criu_path"`
}

// CDI configures Container Device Interface devices.
type CDI struct {
	// SpecDirs are searched for CDI specs, later ones winning.
	SpecDirs []string `toml:"spec_dirs" json:"spec_dirs"`
}

// Stream configures the exec / port-forward streaming server.
type Stream struct {
	// Address is host:port to serve on; port 0 picks a free one.
	Address string `toml:"address" json:"address"`
	// TLSCertFile and TLSKeyFile (PEM), when set, make it serve HTTPS.
	TLSCertFile string `toml:"tls_cert_file" json:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file" json:"tls_key_file"`
}

// Duration is a time.Duration that reads and writes as "10s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the full default configuration, with comments, as
// `berth config default` prints it.
func DefaultTOML() []byte { return bytes.Clone(defaultTOML) }

// Default returns the defaults. They are parsed from the same commented file
// that `berth config default` prints, so the two cannot drift apart.
func Default() Config {
	var c Config
	if _, err := toml.Decode(string(defaultTOML), &c); err != nil {
		// The file is embedded at build time and covered by a test.
		panic(fmt.Sprintf("embedded default config is invalid: %v", err))
	}
	return c
}

// Load reads the file at path over the defaults. A missing file yields the
// defaults when allowMissing is set (the --config default), and an error
// otherwise (a path the user named explicitly).
func Load(path string, allowMissing bool) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && allowMissing {
		return c, nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return Config{}, fmt.Errorf("parse config %s: %w", path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	return c, nil
}

// handlerName is what Kubernetes allows as a RuntimeClass handler.
var handlerName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Validate checks the values a daemon cannot start without.
func (c Config) Validate() error {
	var errs []error
	for name, p := range map[string]string{"address": c.Address, "root": c.Root, "state": c.State} {
		if p == "" {
			errs = append(errs, fmt.Errorf("%s must not be empty", name))
		} else if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s must be an absolute path, got %q", name, p))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level must be debug, info, warn or error, got %q", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format must be text or json, got %q", c.Log.Format))
	}
	switch c.Image.Snapshotter {
	case "overlayfs", "native":
	default:
		errs = append(errs, fmt.Errorf("image.snapshotter must be overlayfs or native, got %q", c.Image.Snapshotter))
	}
	if c.Image.MaxConcurrentDownloads < 1 {
		errs = append(errs, fmt.Errorf("image.max_concurrent_downloads must be at least 1, got %d", c.Image.MaxConcurrentDownloads))
	}
	if c.Image.PullProgressTimeout.Duration < 0 {
		errs = append(errs, errors.New("image.pull_progress_timeout must not be negative"))
	}
	if _, ok := c.Runtime.Handlers[c.Runtime.DefaultHandler]; !ok {
		errs = append(errs, fmt.Errorf("runtime.default_handler %q is not one of runtime.handlers", c.Runtime.DefaultHandler))
	}
	for name, h := range c.Runtime.Handlers {
		if !handlerName.MatchString(name) {
			errs = append(errs, fmt.Errorf("runtime.handlers.%s: a handler name is a DNS label (lower-case letters, digits, '-')", name))
		}
		if h.Path == "" {
			errs = append(errs, fmt.Errorf("runtime.handlers.%s.path must not be empty", name))
		}
	}
	switch c.Runtime.CgroupDriver {
	case "", "cgroupfs", "systemd":
	default:
		errs = append(errs, fmt.Errorf("runtime.cgroup_driver must be cgroupfs, systemd or empty, got %q", c.Runtime.CgroupDriver))
	}
	if (c.Stream.TLSCertFile == "") != (c.Stream.TLSKeyFile == "") {
		errs = append(errs, errors.New("streaming.tls_cert_file and streaming.tls_key_file go together"))
	}
	if c.ShutdownTimeout.Duration < 0 {
		errs = append(errs, errors.New("shutdown_timeout must not be negative"))
	}
	if c.Metrics.Address != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Address); err != nil {
			errs = append(errs, fmt.Errorf("metrics.address %q: want host:port: %v", c.Metrics.Address, err))
		}
	}
	if c.Tracing.SamplingRatio < 0 || c.Tracing.SamplingRatio > 1 {
		errs = append(errs, fmt.Errorf("tracing.sampling_ratio must be within 0 and 1, got %v", c.Tracing.SamplingRatio))
	}
	if c.NRI.Enable {
		for key, p := range map[string]string{"nri.socket_path": c.NRI.SocketPath, "nri.plugin_path": c.NRI.PluginPath, "nri.plugin_config_path": c.NRI.PluginConfigPath} {
			if !filepath.IsAbs(p) {
				errs = append(errs, fmt.Errorf("%s must be an absolute path, got %q", key, p))
			}
		}
		for key, d := range map[string]Duration{"nri.plugin_registration_timeout": c.NRI.RegistrationTimeout, "nri.plugin_request_timeout": c.NRI.RequestTimeout} {
			if d.Duration <= 0 {
				errs = append(errs, fmt.Errorf("%s must be positive, got %s", key, d))
			}
		}
	}
	if c.Debug.Address != "" {
		host, _, err := net.SplitHostPort(c.Debug.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("debug.address %q: want host:port: %v", c.Debug.Address, err))
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("debug.address %q: profiles are served on loopback only", c.Debug.Address))
		}
	}
	return errors.Join(errs...)
}
