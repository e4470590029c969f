// Package sdnotify tells systemd about the daemon's state (Type=notify
// units): READY=1 once it serves, STOPPING=1 when it begins to stop.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Send writes state to the socket systemd named in $NOTIFY_SOCKET. Without
// one (not started by systemd, or not Type=notify) it does nothing.
func Send(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // an abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
