package gpu

// Open on a Mac reports no GPU for now.
func Open(Options) Sampler {
	return Unavailable("GPU monitoring is not available on macOS yet: VRAM checks are off")
}
