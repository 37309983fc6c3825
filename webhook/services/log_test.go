package services

import "github.com/netguard-io/netguard/internal/testlog"

func init() { testlog.Discard() }
