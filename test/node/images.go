package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/netguard-io/netguard/hack/ociimage"
	"github.com/netguard-io/netguard/test/musl"
)

// The test images, built from this machine's files and imported into the
// node's containerd; nothing is pulled.
const (
	// PauseImage is the pods' sandbox.
	PauseImage = "netguard.test/pause:1"
	// NginxImage is Debian's nginx; its name matches netguard's nginx
	// detection ("*/nginx"). It runs as 65532 with a read-only root: its
	// configuration writes only below /tmp and listens on 8080.
	NginxImage = "netguard.test/nginx:1"
	// GetentImage has glibc's getent (and cat and sleep) for resolver tests.
	GetentImage = "netguard.test/getent:1"
	// CoreDNSImage is CoreDNS built from its module.
	CoreDNSImage = "netguard.test/coredns:1"
	// MuslImage holds a static musl getaddrinfo program at /getaddrinfo
	// (test/musl) and waits; its "musl" tag makes netguard count its pods
	// as musl, as it does Alpine images.
	MuslImage = "netguard.test/getaddrinfo:musl"
)

// NginxConf is an nginx.conf for the test nginx image: http holds the
// directives of its http block, which keeps every file nginx writes in
// /tmp (the image's root is read-only).
func NginxConf(http string) string {
	return `pid /tmp/nginx.pid;
events {}
http {
  access_log off;
  client_body_temp_path /tmp/client_body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
` + http + `}
`
}

// nginxConf is the image's own configuration: "ok" on 8080.
var nginxConf = NginxConf(`  server { listen 8080; location / { return 200 "ok\n"; } }
`)

// nextSuffix tags netguard's image a second time, as a later version.
const nextSuffix = "-next"

// buildImages writes an archive per image into dir and returns their paths:
// the test images and netguard's own (from the static binary at netguard,
// named netguardRef, and again as netguardRef+nextSuffix).
func buildImages(dir, netguard, netguardRef, version string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pause := filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-trimpath", "-o", pause, "github.com/netguard-io/netguard/test/node/pause")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the pause program: %v\n%s", err, out)
	}
	getaddrinfo := filepath.Join(dir, "getaddrinfo")
	if err := musl.Build(getaddrinfo); err != nil {
		return nil, err
	}
	coredns, err := exec.Command(repoFile("hack/coredns.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("hack/coredns.sh: %w", err)
	}
	recipes := []struct {
		ref   string
		build func() (v1.Image, error)
	}{
		{PauseImage, func() (v1.Image, error) {
			f, err := ociimage.HostFile(pause, "/pause")
			if err != nil {
				return nil, err
			}
			return ociimage.Build([]ociimage.File{f}, ociimage.Config{Entrypoint: []string{"/pause"}})
		}},
		{NginxImage, func() (v1.Image, error) {
			files, err := hostPrograms("/usr/sbin/nginx")
			if err != nil {
				return nil, err
			}
			mime, err := ociimage.HostFile("/etc/nginx/mime.types", "/etc/nginx/mime.types")
			if err != nil {
				return nil, err
			}
			files = append(files, mime,
				ociimage.File{Path: "/etc/nginx/nginx.conf", Data: []byte(nginxConf), Mode: 0o644},
				ociimage.File{Path: "/tmp", Dir: true, Mode: 0o1777})
			files = append(files, ociimage.Users()...)
			return ociimage.Build(files, ociimage.Config{
				Entrypoint: []string{"/usr/sbin/nginx", "-e", "stderr", "-g", "daemon off;"},
				User:       fmt.Sprintf("%d:%d", ociimage.NonRoot, ociimage.NonRoot),
			})
		}},
		{GetentImage, func() (v1.Image, error) {
			files, err := hostPrograms("/usr/bin/getent", "/usr/bin/cat", "/usr/bin/sleep")
			if err != nil {
				return nil, err
			}
			files = append(files, ociimage.File{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n"), Mode: 0o644})
			files = append(files, ociimage.Users()...)
			return ociimage.Build(files, ociimage.Config{
				Entrypoint: []string{"/usr/bin/sleep", "infinity"},
				User:       fmt.Sprintf("%d:%d", ociimage.NonRoot, ociimage.NonRoot),
			})
		}},
		{MuslImage, func() (v1.Image, error) {
			var files []ociimage.File
			for _, f := range [][2]string{{pause, "/pause"}, {getaddrinfo, "/getaddrinfo"}} {
				file, err := ociimage.HostFile(f[0], f[1])
				if err != nil {
					return nil, err
				}
				files = append(files, file)
			}
			files = append(files, ociimage.Users()...)
			return ociimage.Build(files, ociimage.Config{
				Entrypoint: []string{"/pause"},
				User:       fmt.Sprintf("%d:%d", ociimage.NonRoot, ociimage.NonRoot),
			})
		}},
		{CoreDNSImage, func() (v1.Image, error) {
			f, err := ociimage.HostFile(string(trimNL(coredns)), "/coredns")
			if err != nil {
				return nil, err
			}
			return ociimage.Build([]ociimage.File{f}, ociimage.Config{Entrypoint: []string{"/coredns"}})
		}},
		{netguardRef, func() (v1.Image, error) {
			return ociimage.Netguard(netguard, version, "https://github.com/netguard-io/netguard")
		}},
		{netguardRef + nextSuffix, func() (v1.Image, error) {
			return ociimage.Netguard(netguard, version+nextSuffix, "https://github.com/netguard-io/netguard")
		}},
	}
	var archives []string
	for i, r := range recipes {
		img, err := r.build()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", r.ref, err)
		}
		out := filepath.Join(dir, fmt.Sprintf("image-%d.tar", i))
		if err := ociimage.WriteArchive(out, img, r.ref); err != nil {
			return nil, fmt.Errorf("image %s: %w", r.ref, err)
		}
		archives = append(archives, out)
	}
	return archives, nil
}

func hostPrograms(programs ...string) ([]ociimage.File, error) {
	var files []ociimage.File
	for _, p := range programs {
		f, err := ociimage.HostProgram(p)
		if err != nil {
			return nil, err
		}
		files = append(files, f...)
	}
	return files, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
