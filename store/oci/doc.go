// Package oci pulls OCI container images into a composefs repository and
// makes their EROFS images, storing them as composefs-rs does so that
// cfsctl and gocfs each use the images the other pulled.
//
// A pulled image is a set of splitstreams (see package splitstream):
//
//	streams/oci-layer-<diff_id>       the layer's tar archive, the body of
//	                                  every regular file of more than
//	                                  InlineMax bytes an object
//	streams/oci-config-<digest>       the configuration (one object), with a
//	                                  named reference per layer (by diff_id)
//	                                  and to the EROFS images made of it
//	                                  (composefs.image.v1,
//	                                  composefs.image.boot.v1)
//	streams/oci-manifest-<digest>     the manifest (one object), with named
//	                                  references to the configuration stream
//	                                  ("config:<digest>") and the layers
//	streams/refs/oci/<tag>            the tag: "%" and "/" of the tag are
//	                                  percent-encoded
//
// The tag keeps the manifest alive, the manifest the configuration, and the
// configuration the layers and the images, so one tag keeps a whole image
// through garbage collection; an untagged image goes at the next one.
//
// Layer streams reassemble to exactly the archives the image's diff_ids
// name. The image's filesystem is built from them by TreeFromLayers with
// composefs-rs's rules, including its xattr policy, and
// written with the EROFS format the repository records, so that gocfs and
// composefs-rs give the same image, with the same fs-verity digest, for the
// same layers.
//
// Differences from composefs-rs: pulls go through containers/image in
// process rather than skopeo; only the docker, oci, oci-archive,
// docker-archive and dir transports are supported; composefs-rs's legacy
// EROFS format 2 is not made; boot images are not SELinux-relabelled (see
// BootTransform).
package oci
