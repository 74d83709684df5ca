package deploy

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// adminNeedsToken: an admin API bound beyond loopback never starts without a
// token (cmd/internal/config.AdminAuth), so its container must get one from a
// secret file.
func adminNeedsToken(env map[string]string) bool {
	host, _, err := net.SplitHostPort(env["JML_ADMIN_ADDR"])
	return err != nil || (host != "localhost" && !strings.HasPrefix(host, "127.") && host != "::1")
}

func adminTokenFile(env map[string]string) string {
	if f := env["JML_ADMIN_TOKENS_FILE"]; f != "" {
		return f
	}
	return env["JML_ADMIN_TOKEN_FILE"]
}

// TestWorkersGetAnAdminToken: every worker (compose and Kubernetes) whose admin
// API listens beyond loopback reads its admin token from a mounted secret.
func TestWorkersGetAnAdminToken(t *testing.T) {
	c := loadCompose(t)
	n := 0
	for name, s := range c.Services {
		if !isJML(s) || len(s.Entrypoint) != 1 || s.Entrypoint[0] != "/usr/local/bin/worker" {
			continue
		}
		n++
		if !adminNeedsToken(s.Environment) {
			continue
		}
		f := adminTokenFile(s.Environment)
		sec, ok := strings.CutPrefix(f, "/run/secrets/")
		if !ok || !slices.Contains(s.Secrets, sec) || s.Environment["JML_ADMIN_TOKEN"] != "" {
			t.Errorf("docker-compose.yml: %s: JML_ADMIN_ADDR=%s needs JML_ADMIN_TOKEN_FILE or JML_ADMIN_TOKENS_FILE from one of its secrets (got %q)",
				name, s.Environment["JML_ADMIN_ADDR"], f)
		}
	}
	if n == 0 {
		t.Fatal("no compose worker found")
	}
	found := false
	for _, o := range k8sObjects(t) {
		if o.Kind != "Deployment" || o.Metadata.Name != "worker" {
			continue
		}
		found = true
		ps := o.Spec.Template.Spec
		for _, ctr := range ps.Containers {
			env := map[string]string{}
			for _, e := range ctr.Env {
				env[e.Name] = e.Value
			}
			if !adminNeedsToken(env) {
				continue
			}
			f := adminTokenFile(env)
			if f == "" || env["JML_ADMIN_TOKEN"] != "" {
				t.Errorf("Deployment/worker: JML_ADMIN_ADDR=%s without JML_ADMIN_TOKEN_FILE/JML_ADMIN_TOKENS_FILE", env["JML_ADMIN_ADDR"])
				continue
			}
			if !secretMounted(ps, ctr.VolumeMounts, f) {
				t.Errorf("Deployment/worker: %s is not a key of a mounted Secret", f)
			}
		}
	}
	if !found {
		t.Fatal("Deployment/worker not found")
	}
}

// secretMounted: file is <mountPath>/<item path> of a Secret volume the
// container mounts.
func secretMounted(ps k8sPodSpec, mounts []struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
}, file string) bool {
	for _, m := range mounts {
		for _, v := range ps.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if filepath.Join(m.MountPath, it.Path) == file {
					return true
				}
			}
		}
	}
	return false
}
