// Package config holds netguard's settings: one YAML file, typed, with
// defaults that give the documented behaviour when there is no file at all,
// and validation whose errors name the offending field.
//
// Layer: settings, below the rules. It may import internal only.
package config
