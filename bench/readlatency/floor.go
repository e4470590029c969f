package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// floorServer is this program run again as a process that answers gRPC
// health checks and does nothing else: how long a call to it takes under
// the write load is what the machine's scheduling alone costs a call,
// outside any runtime.
type floorServer struct {
	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	client healthpb.HealthClient
}

func startFloor(ctx context.Context, socket string) (*floorServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-serve-floor", socket)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	conn, err := e2eenv.Dial(socket)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("floor server: %w", err)
	}
	f := &floorServer{cmd: cmd, conn: conn, client: healthpb.NewHealthClient(conn)}
	// Until it serves: the first check waits for the connection.
	readyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := f.client.Check(readyCtx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		f.Close()
		return nil, fmt.Errorf("floor server: %w", err)
	}
	return f, nil
}

func (f *floorServer) Close() {
	f.conn.Close()
	f.cmd.Process.Kill()
	f.cmd.Wait()
}

// serveFloor answers health checks on socket until killed.
func serveFloor(socket string) error {
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	return srv.Serve(l)
}
