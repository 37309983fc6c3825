package version

import "runtime/debug"

// Version is set at build time with
// -ldflags "-X github.com/netguard-io/netguard/internal/version.Version=v1.2.3".
var Version = ""

// Get returns the build version: the ldflags value, else the module version
// recorded by `go install`, else "devel".
func Get() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
