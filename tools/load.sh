#!/bin/sh
# The air-gapped bundle's loader (tools/bundle.py writes it into the bundle, filling in the @...@ values).
# It puts fx's images where the cluster pulls them from (a registry, with skopeo, or each node's containerd,
# with ctr), optionally pushes the chart (helm), then prints the helm install line. Everything it needs is
# checked first, so a missing file or tool changes nothing. Exit codes: 0 done, 1 failed, 2 bad usage.
set -eu

VERSION='@VERSION@'
TAG='@TAG@'
IMAGES='@IMAGES@'
SAVED_AS='@REGISTRY@' # the registry path the images are named under inside their archives
CHART="chart/fx-$VERSION.tgz"

usage() {
	cat <<EOF
fx $VERSION air-gapped bundle: load the images ($IMAGES, tag $TAG).

  ./load.sh --registry HOST[:PORT]/PATH [--ca-file FILE | --insecure] [--chart-repo oci://HOST[:PORT]/PATH]
      copy each image to HOST[:PORT]/PATH/<name>:$TAG with skopeo (log in first with skopeo login if the
      registry wants credentials); --ca-file: the registry's certificate is signed by the CA in FILE;
      --insecure: the registry speaks plain HTTP; --chart-repo: push the chart there too (with helm)

  ./load.sh --containerd [--address SOCKET] [--registry HOST[:PORT]/PATH]
      import the images into this node's containerd (namespace k8s.io) with ctr: run it on every node.
      They are named <registry>/<name>:$TAG, the names the chart's image.registry makes
      (default registry: $SAVED_AS); --address: containerd's socket (default /run/containerd/containerd.sock)
EOF
}

fail() {
	echo "load.sh: $*" >&2
	exit 1
}

bad_usage() {
	echo "load.sh: $*" >&2
	echo "run ./load.sh --help for usage" >&2
	exit 2
}

value() { # the value of option $1, which must be there ($2, when set)
	if [ "$#" -lt 2 ] || [ -z "$2" ]; then bad_usage "$1 needs a value"; fi
	printf '%s' "$2"
}

registry='' ca_file='' insecure='' chart_repo='' containerd='' address=/run/containerd/containerd.sock
while [ "$#" -gt 0 ]; do
	case "$1" in
	--registry) registry=$(value "$@"); shift ;;
	--ca-file) ca_file=$(value "$@"); shift ;;
	--insecure) insecure=1 ;;
	--chart-repo) chart_repo=$(value "$@"); shift ;;
	--containerd) containerd=1 ;;
	--address) address=$(value "$@"); shift ;;
	-h | --help)
		usage
		exit 0
		;;
	*) bad_usage "unknown argument: $1" ;;
	esac
	shift
done

if [ -z "$containerd" ] && [ -z "$registry" ]; then
	bad_usage "say where the images go: --registry HOST[:PORT]/PATH, or --containerd on each node"
fi
case "$registry" in
*://*) bad_usage "--registry takes HOST[:PORT]/PATH without a scheme, e.g. registry.example.com:5000/fx" ;;
*/ | */*:* | *@*) bad_usage "--registry $registry: give HOST[:PORT]/PATH, with no tag, digest or trailing /" ;;
esac
[ -n "$registry" ] || registry=$SAVED_AS
[ -z "$ca_file" ] || [ -z "$insecure" ] || bad_usage "--ca-file and --insecure exclude each other"
[ -z "$ca_file" ] || [ -f "$ca_file" ] || bad_usage "--ca-file $ca_file: no such file"
case "$ca_file" in
/* | '') ;;
*) ca_file="$(pwd)/$ca_file" ;; # the script changes directory below
esac
case "$chart_repo" in
'' | oci://*) chart_repo=${chart_repo%/} ;;
*) bad_usage "--chart-repo takes an OCI URL, e.g. oci://registry.example.com:5000/charts" ;;
esac

cd "$(dirname "$0")"

# Everything is checked before anything is loaded.
missing=''
for name in $IMAGES; do
	[ -f "images/$name.oci.tar" ] || missing="$missing images/$name.oci.tar"
done
[ -f "$CHART" ] || missing="$missing $CHART"
[ -z "$missing" ] || fail "missing from the bundle:$missing (extract the whole archive: tar xf fx-bundle-$VERSION.tar)"
if command -v sha256sum >/dev/null 2>&1; then
	sha256sum --quiet -c SHA256SUMS >&2 || fail "files above differ from SHA256SUMS: copy the bundle again"
else
	echo "load.sh: no sha256sum here: the files are not checked against SHA256SUMS" >&2
fi
if [ -n "$containerd" ]; then
	command -v ctr >/dev/null 2>&1 || fail "ctr is missing: it comes with containerd (Debian/Ubuntu: apt-get install containerd)"
	[ -S "$address" ] || fail "no containerd socket at $address (give the node's with --address)"
else
	command -v skopeo >/dev/null 2>&1 ||
		fail "skopeo is missing: install it (Debian/Ubuntu: apt-get install skopeo; RHEL/Fedora: dnf install skopeo)"
fi
if [ -n "$chart_repo" ]; then
	command -v helm >/dev/null 2>&1 || fail "--chart-repo needs helm, which is missing (https://helm.sh/docs/intro/install/)"
fi

# TLS for skopeo and helm: skopeo trusts the CA files in a directory, helm takes the file itself.
tls='' helm_tls=''
if [ -n "$ca_file" ]; then
	certs=$(mktemp -d)
	trap 'rm -rf "$certs"' EXIT
	cp "$ca_file" "$certs/ca.crt"
	tls="--dest-cert-dir $certs"
	helm_tls=" --ca-file $ca_file"
elif [ -n "$insecure" ]; then
	tls="--dest-tls-verify=false"
	helm_tls=" --plain-http"
fi

done_names=''
for name in $IMAGES; do
	target="$registry/$name:$TAG"
	if [ -n "$containerd" ]; then
		source="$SAVED_AS/$name:$TAG"
		echo "import images/$name.oci.tar into containerd as $target"
		ctr -a "$address" -n k8s.io images import --base-name "$SAVED_AS/$name" "images/$name.oci.tar" >/dev/null ||
			fail "ctr could not import images/$name.oci.tar (loaded so far:${done_names:- none}); run load.sh again"
		ctr -a "$address" -n k8s.io images ls -q | grep -qxF "$source" ||
			fail "ctr imported no image named $source from images/$name.oci.tar"
		if [ "$source" != "$target" ]; then
			ctr -a "$address" -n k8s.io images tag --force "$source" "$target" >/dev/null
			ctr -a "$address" -n k8s.io images rm "$source" >/dev/null
		fi
	else
		echo "copy images/$name.oci.tar to $target"
		# shellcheck disable=SC2086 # $tls is zero, one or two words
		skopeo copy -q $tls "oci-archive:images/$name.oci.tar" "docker://$target" ||
			fail "skopeo could not copy $name to $target (copied so far:${done_names:- none}); fix the cause and run load.sh again"
	fi
	done_names="$done_names $name"
done

chart=$(pwd)/$CHART
if [ -n "$chart_repo" ]; then
	echo "push $CHART to $chart_repo"
	# shellcheck disable=SC2086 # $helm_tls is zero or two words
	helm push "$CHART" "$chart_repo"$helm_tls || fail "helm could not push $CHART to $chart_repo"
	chart="$chart_repo/fx --version $VERSION$helm_tls"
fi
tag_value=''
[ "$TAG" = "$VERSION" ] || tag_value=" --set image.tag=$TAG"

echo
echo "Images loaded. Install fx $VERSION (add your own --set or -f values.yaml):"
echo "  helm install fx $chart -n fx --create-namespace --set image.registry=$registry$tag_value"
if [ -n "$containerd" ]; then
	echo "(first on every node: ./load.sh --containerd --registry $registry)"
else
	echo "(every node must be able to pull from $registry: INSTALL.md, \"Nodes and the registry\")"
fi
echo "The fx CLI, offline:"
echo "  pip install --no-index --find-links $(pwd)/wheels fx-sdk"
