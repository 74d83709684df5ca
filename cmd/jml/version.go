package main

import "runtime/debug"

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return bi.Main.Version + " (" + s.Value[:12] + ")"
			}
		}
		return bi.Main.Version
	}
	return "(devel)"
}
