package memlimit

import (
	"strings"
	"testing"
)

func TestLimit(t *testing.T) {
	for name, tc := range map[string]struct {
		env        map[string]string
		want       int64
		wantSource Source
		wantErr    string
	}{
		"nothing set":               {want: 0, wantSource: SourceNone},
		"the chart's default 256Mi": {env: map[string]string{EnvVar: "268435456"}, want: 241591910, wantSource: SourceContainer},
		"GOMEMLIMIT wins":           {env: map[string]string{EnvVar: "268435456", "GOMEMLIMIT": "200MiB"}, wantSource: SourceGOMEMLIMIT},
		"surrounding spaces":        {env: map[string]string{EnvVar: " 1000 "}, want: 900, wantSource: SourceContainer},
		"a quantity, not bytes":     {env: map[string]string{EnvVar: "256Mi"}, wantErr: EnvVar},
		"zero":                      {env: map[string]string{EnvVar: "0"}, wantErr: EnvVar},
		"no container limit, huge":  {env: map[string]string{EnvVar: "9223372036854775807"}, wantSource: SourceNone},
		"negative":                  {env: map[string]string{EnvVar: "-5"}, wantErr: "divisor 1"},
	} {
		t.Run(name, func(t *testing.T) {
			got, source, err := Limit(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || source != tc.wantSource {
				t.Errorf("Limit = %d, %s, %v; want %d, %s", got, source, err, tc.want, tc.wantSource)
			}
		})
	}
}
