package cri

import (
	"context"
	"syscall"

	"github.com/berth-cri/berth/internal/monitor"
	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/sandbox"
)

// Where the CRI layer meets the world: small interfaces, so that each
// failure path (a monitor gone, CNI failing, a context cut off at any
// step) is a unit test with a fake (service_test.go, seams_test.go).

// monitors launches pods' monitors and reaches them by socket.
type monitors interface {
	Launch(ctx context.Context, o monitor.LaunchOptions) (int, error)
	Client(socket string) monitorClient
}

// monitorClient is what the CRI layer asks of one pod's monitor
// (monitor.Client).
type monitorClient interface {
	Start(ctx context.Context, id, bundle string, o monitor.StartOptions) (int, error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Delete(ctx context.Context, id string) error
	Reopen(ctx context.Context, id, logPath, logRoot string) error
	State(ctx context.Context) ([]api.Container, error)
	Protocol(ctx context.Context) (int, error)
	SettledState(ctx context.Context) ([]api.Container, error)
	Pause(ctx context.Context) (int, error)
	Shutdown(ctx context.Context) error
	Exec(ctx context.Context, id string, process any, stdio monitor.Stdio) (int32, error)
	Attach(ctx context.Context, id string, stdio monitor.Stdio) (int32, error)
	Events(ctx context.Context, subscribed func(), fn func(api.Event)) error
}

// podNetworks attaches pods to the CNI network and detaches them.
type podNetworks interface {
	Setup(ctx context.Context, p network.Pod) ([]string, error)
	Teardown(ctx context.Context, p network.Pod) error
}

// podNamespaces makes and removes a pod's pinned namespaces and files.
type podNamespaces interface {
	Create(s sandbox.Spec) (sandbox.Paths, error)
	Remove(dir string) error
}

// realMonitors is berth-monitor processes over their unix sockets.
type realMonitors struct{}

func (realMonitors) Launch(ctx context.Context, o monitor.LaunchOptions) (int, error) {
	return monitor.Launch(ctx, o)
}
func (realMonitors) Client(socket string) monitorClient { return monitor.Client{Socket: socket} }

// realNamespaces is internal/sandbox.
type realNamespaces struct{}

func (realNamespaces) Create(s sandbox.Spec) (sandbox.Paths, error) { return sandbox.Create(s) }
func (realNamespaces) Remove(dir string) error                      { return sandbox.Remove(dir) }
