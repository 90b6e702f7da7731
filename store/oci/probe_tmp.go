package oci

import (
	_ "go.podman.io/image/v5/oci/layout"
	_ "go.podman.io/image/v5/docker"
	_ "go.podman.io/image/v5/oci/archive"
	_ "go.podman.io/image/v5/docker/archive"
	_ "go.podman.io/image/v5/directory"
	_ "go.podman.io/image/v5/image"
	_ "go.podman.io/image/v5/manifest"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/vbauerster/mpb/v8"
)
