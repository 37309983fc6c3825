package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/netguard-io/netguard/internal/version"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the netguard version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "netguard %s (%s, %s/%s)\n", version.Get(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
