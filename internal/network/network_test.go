package network

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestWithoutPlugins(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "10.conflist")
	os.WriteFile(file, []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}},{"type":"loopback"}]}`), 0o644)
	b, ok := withoutPlugins(file, "loopback", "portmap")
	if !ok {
		t.Fatal("portmap not found")
	}
	var list struct {
		Name    string
		Plugins []struct{ Type string }
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if list.Name != "n" || len(list.Plugins) != 1 || list.Plugins[0].Type != "bridge" {
		t.Errorf("slim list = %s", b)
	}
	os.WriteFile(file, []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"}]}`), 0o644)
	if _, ok := withoutPlugins(file, "portmap"); ok {
		t.Error("a list without portmap reported one")
	}
	// A list of nothing but the dropped plugins is used as it is.
	os.WriteFile(file, []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"loopback"}]}`), 0o644)
	if _, ok := withoutPlugins(file, "loopback"); ok {
		t.Error("a list of only loopback was emptied")
	}
}

func TestHandleChoiceFollowsHostPorts(t *testing.T) {
	h := handles{}
	withPorts := Pod{Ports: []*runtime.PortMapping{{ContainerPort: 80, HostPort: 8080}}}
	containerOnly := Pod{Ports: []*runtime.PortMapping{{ContainerPort: 80}}}
	if !withPorts.hasHostPorts() || containerOnly.hasHostPorts() || (Pod{}).hasHostPorts() {
		t.Error("hasHostPorts")
	}
	if h.forPod(withPorts) != nil || h.forPod(containerOnly) != nil {
		t.Error("empty handles returned a network")
	}
}
