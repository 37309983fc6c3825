package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of an image's filesystem.
type File struct {
	// Path inside the image, absolute ("/netguard").
	Path string
	// Data is the content; for a symlink (Link set) it is ignored.
	Data []byte
	// Mode holds the permission bits (0o755 for programs). A directory
	// is a File with Dir set.
	Mode int64
	// Dir makes the entry a directory.
	Dir bool
	// Link makes the entry a symbolic link to Link.
	Link string
	// UID and GID own the entry (0: root).
	UID, GID int
}

// Config is the image configuration.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	// User runs the entrypoint, as "UID:GID".
	User       string
	WorkingDir string
	Labels     map[string]string
}

// Build returns a linux/amd64 image with one layer holding files. Parent
// directories are created (root-owned, 0755) where files do not list them.
func Build(files []File, cfg Config) (v1.Image, error) {
	layer, err := layerOf(files)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.Env = cfg.Env
	cf.Config.User = cfg.User
	cf.Config.WorkingDir = cfg.WorkingDir
	cf.Config.Labels = cfg.Labels
	return mutate.ConfigFile(img, cf)
}

// layerOf writes files into one tar layer, parents first, in a stable order.
func layerOf(files []File) (v1.Layer, error) {
	entries := map[string]File{}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("image path %q is not absolute", f.Path)
		}
		p := path.Clean(f.Path)
		entries[p] = f
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = File{Path: dir, Dir: true, Mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range names {
		f := entries[p]
		h := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: f.Mode, Uid: f.UID, Gid: f.GID, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// WriteArchive writes img, named ref ("registry/repo:tag"), to file as an
// OCI image layout archive with a docker-style manifest.json.
func WriteArchive(file string, img v1.Image, ref string) (err error) {
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(out)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIImageIndex,
		"manifests": []map[string]any{{
			"mediaType": mediaType,
			"digest":    digest.String(),
			"size":      len(manifest),
			"annotations": map[string]string{
				// containerd names the image by the first, OCI tools by the second.
				"io.containerd.image.name":          ref,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	})
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var layerNames []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		layerNames = append(layerNames, blob(d))
	}
	dockerManifest, err := json.Marshal([]map[string]any{{"Config": blob(configName), "RepoTags": []string{ref}, "Layers": layerNames}})
	if err != nil {
		return err
	}

	for _, e := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", dockerManifest},
		{blob(digest), manifest},
		{blob(configName), config},
	} {
		if err := add(e.name, e.data); err != nil {
			return err
		}
	}
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := add(layerNames[i], data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// HostProgram returns the program at path on this machine and, when it is
// dynamically linked, the shared libraries and the loader it needs (as ldd
// lists them), each at its own path in the image.
func HostProgram(program string) ([]File, error) {
	paths := []string{program}
	out, err := exec.Command("ldd", program).CombinedOutput()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or
			// "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
			fields := strings.Fields(line)
			for _, f := range fields {
				if strings.HasPrefix(f, "/") {
					paths = append(paths, f)
					break
				}
			}
		}
	} else if !strings.Contains(string(out), "not a dynamic executable") {
		return nil, fmt.Errorf("ldd %s: %v: %s", program, err, out)
	}
	var files []File
	for _, p := range paths {
		f, err := HostFile(p, p)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// HostFile reads the file at hostPath (following symlinks) into a File at
// imagePath, keeping its permission bits.
func HostFile(hostPath, imagePath string) (File, error) {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return File{}, err
	}
	info, err := os.Stat(hostPath)
	if err != nil {
		return File{}, err
	}
	return File{Path: imagePath, Data: data, Mode: int64(info.Mode().Perm())}, nil
}
