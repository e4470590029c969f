package layout

import "testing"

func TestLayout(t *testing.T) {
	s := State("/run/berth")
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for got, want := range map[string]string{
		s.Pod(id).Namespace("net"): "/run/berth/pods/" + id + "/ns/net",
		s.Pod(id).Config():         "/run/berth/pods/" + id + "/config.pb",
		s.Container(id).Spec():     "/run/berth/containers/" + id + "/config.json",
		s.Container(id).Rootfs():   "/run/berth/containers/" + id + "/rootfs",
		s.Container(id).Exit():     "/run/berth/containers/" + id + "/exit.json",
		s.Pause(id).Dir():          "/run/berth/pause/" + id,
		s.MonitorSocket(id):        "/run/berth/mon/0123456789abcdef.sock",
		s.RuntimeRoot("crun"):      "/run/berth/runtimes/crun",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}
