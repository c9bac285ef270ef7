#!/usr/bin/env bash
# Install the real HDFS clients used by ringfs interop tests, idempotently,
# from package registries only (Debian apt + PyPI):
#
#   * Java >= 17 (runtime + javac)             -- apt: openjdk-17-{jre,jdk}-headless
#   * Python venv with pyspark, snakebite-py3,
#     hdfs-native                              -- PyPI
#   * Hadoop client jars for the Java FsShell  -- taken from pyspark's bundled jars
#   * wrappers in $RINGFS_DEPS/bin: hadoop, hdfs, snakebite, hdfsn, python, spark-submit
#   * $RINGFS_DEPS/env.sh to source
#
# Usage: scripts/install-clients.sh [--force] [--quiet]
#   --force   ignore the "already installed" marker and re-run every step
#   --quiet   on the fast path, print nothing but the version lines
#
# Environment:
#   RINGFS_DEPS      install root (default: $HOME/.cache/ringfs-deps)
#   RINGFS_PYTHON    interpreter used to create the venv (default: python3, needs >= 3.10)
#   RINGFS_PYSPARK_VERSION / RINGFS_SNAKEBITE_VERSION / RINGFS_HDFS_NATIVE_VERSION
#                    override the pinned versions below
#
# Safe with no stdin and CI=true. Re-running when everything is in place takes
# about a second (marker check + version print).
set -Eeuo pipefail
exec </dev/null

PROG=install-clients.sh
# shellcheck disable=SC2154  # rc is assigned inside the trap string
trap 'rc=$?; echo "$PROG: ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

die()  { echo "$PROG: ERROR: $*" >&2; exit 1; }
warn() { echo "$PROG: warning: $*" >&2; }
log()  { [[ $QUIET == 1 ]] || echo "==> $*" >&2; }

FORCE=0
QUIET=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        --quiet) QUIET=1 ;;
        -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg (try --help)" ;;
    esac
done

# ---------------------------------------------------------------- settings --
PYSPARK_VERSION=${RINGFS_PYSPARK_VERSION:-4.3.0}
SNAKEBITE_VERSION=${RINGFS_SNAKEBITE_VERSION:-3.0.6}
HDFS_NATIVE_VERSION=${RINGFS_HDFS_NATIVE_VERSION:-0.14.7}
PYTHON=${RINGFS_PYTHON:-python3}
# Any edit to this script invalidates the "installed" marker (full, still
# idempotent, re-run on next use).
SCRIPT_SUM=$(cksum <"${BASH_SOURCE[0]}" | awk '{print $1}')

DEPS=${RINGFS_DEPS:-${HOME:?HOME is not set}/.cache/ringfs-deps}
VENV=$DEPS/venv
BIN=$DEPS/bin
HADOOP_JARS=$DEPS/hadoop/jars
HADOOP_CONF=$DEPS/hadoop/conf
MARKER=$DEPS/.installed

# Jars (from pyspark's bundled jars dir) that make up the Hadoop client
# classpath. "req" = FsShell / DistributedFileSystem will not start or link
# without it; "opt" = referenced by hadoop-client-api on some client code path
# (codecs for `fs -text`, commons-logging/log4j-1.x API callers) -- cheap to add.
JAR_SPECS=(
    "req hadoop-client-api-*.jar"       # org.apache.hadoop.* (shaded client API)
    "req hadoop-client-runtime-*.jar"   # shaded third-party deps (protobuf, guava, ...)
    "req slf4j-api-*.jar"               # FsShell.<clinit> needs org.slf4j.LoggerFactory
    "req log4j-slf4j2-impl-*.jar"       # slf4j 2 -> log4j2 binding (else "No SLF4J providers")
    "req log4j-api-*.jar"
    "req log4j-core-*.jar"
    "opt log4j-1.2-api-*.jar"           # org.apache.log4j.* used by a few hadoop-common classes
    "opt jcl-over-slf4j-*.jar"          # org.apache.commons.logging.* (ReflectionUtils, ServiceOperations)
    "opt snappy-java-*.jar"             # SnappyCodec (fs -text of snappy files)
    "opt lz4-java-*.jar"                # Lz4Codec
)
STAMP="script=$SCRIPT_SUM pyspark=$PYSPARK_VERSION snakebite-py3=$SNAKEBITE_VERSION hdfs-native=$HDFS_NATIVE_VERSION jars=$(printf '%s,' "${JAR_SPECS[@]}")"

# ------------------------------------------------------------------ helpers --
# major Java version of a java/javac binary, or empty
java_major() {
    "$1" -XshowSettings:properties -version 2>&1 |
        awk -F'= ' '/java\.specification\.version/ { v=$2; sub(/^1\./, "", v); print int(v); exit }'
}
javac_major() {
    "$1" -version 2>&1 | awk '/^javac/ { v=$2; sub(/^1\./, "", v); split(v, a, "."); print int(a[1]); exit }'
}

# first java >= 17 among: $JAVA_HOME, PATH, /usr/lib/jvm; prints its real path
find_java() {
    local c m
    for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" \
             /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/*/bin/java; do
        [[ -n $c && -x $c ]] || continue
        m=$(java_major "$c" || true)
        if [[ -n $m && $m -ge 17 ]]; then readlink -f "$c"; return 0; fi
    done
    return 1
}

# javac >= 17, preferring the one in the same JDK as $1 (a java path)
find_javac() {
    local c m
    for c in "$(dirname "$1")/javac" ${JAVA_HOME:+"$JAVA_HOME/bin/javac"} "$(command -v javac || true)" \
             /usr/lib/jvm/java-17-openjdk-*/bin/javac /usr/lib/jvm/*/bin/javac; do
        [[ -n $c && -x $c ]] || continue
        m=$(javac_major "$c" || true)
        if [[ -n $m && $m -ge 17 ]]; then readlink -f "$c"; return 0; fi
    done
    return 1
}

APT_UPDATED=0
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
            die "need root (or passwordless sudo) to apt-get install $*"
        fi
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    if [[ $APT_UPDATED == 0 ]]; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" ||
        die "apt-get install $* failed"
}

# write $2 into file $1 only if the content differs (keeps mtimes stable)
write_file() {
    local f=$1 content=$2 mode=${3:-644}
    if [[ ! -f $f ]] || [[ $(cat "$f") != "$content" ]]; then
        printf '%s\n' "$content" >"$f.tmp.$$"
        chmod "$mode" "$f.tmp.$$"
        mv -f "$f.tmp.$$" "$f"
    fi
}

print_versions() {
    local jv jcv hv pyv
    jv=$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java\.runtime\.version/ {print $2; exit}')
    jcv=$("$JAVAC" -version 2>&1 | awk '{print $2; exit}')
    hv=$("$BIN/hadoop" version 2>/dev/null | awk '/^Hadoop / {print $2; exit}') ||
        die "the Java FsShell classpath is broken: '$BIN/hadoop version' failed"
    [[ -n $hv ]] || die "'$BIN/hadoop version' printed no Hadoop version"
    pyv=$("$VENV/bin/python" - <<'EOF'
import sys
from importlib.metadata import version
print(f"python      {sys.version.split()[0]}")
for dist in ("pyspark", "snakebite-py3", "hdfs-native"):
    print(f"{dist:<11} {version(dist)}")
EOF
    ) || die "venv python at $VENV is broken (re-run with --force)"
    echo "java        $jv ($JAVA)"
    echo "javac       $jcv ($JAVAC)"
    echo "hadoop      $hv (FsShell: $BIN/hadoop fs, jars: $HADOOP_JARS)"
    local name ver
    while read -r name ver; do
        case $name in
            python)        echo "python      $ver ($BIN/python)" ;;
            pyspark)       echo "pyspark     $ver ($BIN/spark-submit)" ;;
            snakebite-py3) echo "snakebite   $ver (snakebite-py3, CLI $BIN/snakebite)" ;;
            hdfs-native)   echo "hdfs-native $ver (python module hdfs_native via $BIN/python, CLI $BIN/hdfsn)" ;;
        esac
    done <<<"$pyv"
}

# ---------------------------------------------------------------- fast path --
mkdir -p "$DEPS" || die "cannot create $DEPS"
if command -v flock >/dev/null; then
    exec 9>"$DEPS/.lock"
    flock -w 3600 9 || die "timed out waiting for another $PROG holding $DEPS/.lock"
fi

if [[ $FORCE == 0 && -f $MARKER ]]; then
    # marker format: line 1 = stamp, line 2 = java path, line 3 = javac path
    { read -r m_stamp; read -r JAVA; read -r JAVAC; } <"$MARKER" || true
    ok=1
    [[ ${m_stamp:-} == "$STAMP" ]] || ok=0
    [[ -x ${JAVA:-/nonexistent} && -x ${JAVAC:-/nonexistent} && -x $VENV/bin/python ]] || ok=0
    for f in "$BIN/hadoop" "$BIN/hdfs" "$BIN/snakebite" "$BIN/python" "$BIN/spark-submit" "$BIN/hdfsn" \
             "$HADOOP_CONF/core-site.xml" "$DEPS/env.sh"; do
        [[ -e $f ]] || ok=0
    done
    # every jar link must still resolve (venv may have been wiped)
    shopt -s nullglob
    jars=("$HADOOP_JARS"/*.jar)
    shopt -u nullglob
    [[ ${#jars[@]} -gt 0 ]] || ok=0
    for f in "${jars[@]}"; do [[ -e $f ]] || ok=0; done
    if [[ $ok == 1 ]]; then
        log "already installed in $DEPS (marker $MARKER; --force to redo)"
        print_versions
        exit 0
    fi
    log "marker present but install is stale or incomplete; re-running all steps"
fi
rm -f "$MARKER"

# --------------------------------------------------------------- 1. Java 17 --
log "checking Java >= 17"
if ! JAVA=$(find_java); then
    apt_install openjdk-17-jre-headless
    JAVA=$(find_java) || die "openjdk-17-jre-headless installed but no java >= 17 found under /usr/lib/jvm"
fi
if ! JAVAC=$(find_javac "$JAVA"); then
    apt_install openjdk-17-jdk-headless
    JAVAC=$(find_javac "$JAVA") || die "openjdk-17-jdk-headless installed but no javac >= 17 found"
fi
JAVA_HOME_RESOLVED=$(dirname "$(dirname "$JAVA")")
log "java:  $JAVA"
log "javac: $JAVAC"

# ---------------------------------------------------------- 2. Python venv --
log "preparing Python venv at $VENV"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set RINGFS_PYTHON to a Python >= 3.10)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
    die "$PYTHON is $("$PYTHON" -V 2>&1); hdfs-native and pyspark $PYSPARK_VERSION need Python >= 3.10 (set RINGFS_PYTHON)"
if [[ -x $VENV/bin/python ]] && ! "$VENV/bin/python" -c 'import sys, pip' 2>/dev/null; then
    warn "existing venv $VENV is broken; recreating"
    rm -rf "$VENV"
fi
if [[ ! -x $VENV/bin/python ]]; then
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        # Debian's python3 ships venv/ensurepip separately
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
fi
log "pip install pyspark==$PYSPARK_VERSION snakebite-py3==$SNAKEBITE_VERSION hdfs-native==$HDFS_NATIVE_VERSION (first time: ~450 MB download)"
PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
"$VENV/bin/python" -m pip install --progress-bar off \
    "pyspark==$PYSPARK_VERSION" \
    "snakebite-py3==$SNAKEBITE_VERSION" \
    "hdfs-native==$HDFS_NATIVE_VERSION" ||
    die "pip install into $VENV failed (see pip output above)"

PYSPARK_DIR=$("$VENV/bin/python" -c 'import importlib.util as u; print(u.find_spec("pyspark").submodule_search_locations[0])') ||
    die "pyspark is not importable from $VENV"
PYSPARK_JARS=$PYSPARK_DIR/jars
[[ -d $PYSPARK_JARS ]] || die "pyspark installed but has no jars dir at $PYSPARK_JARS"
for exe in snakebite spark-submit hdfsn; do
    [[ -x $VENV/bin/$exe ]] || die "$VENV/bin/$exe missing after pip install"
done

# ----------------------------------------------------- 3. Hadoop client jars --
log "linking Hadoop client jars from $PYSPARK_JARS into $HADOOP_JARS"
rm -rf "$HADOOP_JARS.new"
mkdir -p "$HADOOP_JARS.new" "$HADOOP_CONF"
shopt -s nullglob
for spec in "${JAR_SPECS[@]}"; do
    kind=${spec%% *}
    pattern=${spec#* }
    # shellcheck disable=SC2206  # $pattern is a glob on purpose
    matches=("$PYSPARK_JARS"/$pattern)
    if [[ ${#matches[@]} -eq 1 ]]; then
        ln -s "${matches[0]}" "$HADOOP_JARS.new/"
    elif [[ ${#matches[@]} -eq 0 && $kind == opt ]]; then
        warn "optional jar $pattern not found in $PYSPARK_JARS; skipping"
    else
        die "expected exactly one $pattern in $PYSPARK_JARS, found ${#matches[@]}: ${matches[*]:-none}"
    fi
done
shopt -u nullglob
rm -rf "$HADOOP_JARS"
mv "$HADOOP_JARS.new" "$HADOOP_JARS"

# Is DFSAdmin (server-side hadoop-hdfs jar, normally) in the client jars?
DFSADMIN_CLASS=org.apache.hadoop.hdfs.tools.DFSAdmin
HAS_DFSADMIN=$("$VENV/bin/python" - "$HADOOP_JARS" <<'EOF'
import glob, sys, zipfile
want = "org/apache/hadoop/hdfs/tools/DFSAdmin.class"
print(int(any(want in zipfile.ZipFile(j).namelist() for j in glob.glob(sys.argv[1] + "/*.jar"))))
EOF
)

# shellcheck disable=SC2016  # literal $HADOOP_CONF_DIR in the comment
write_file "$HADOOP_CONF/core-site.xml" '<?xml version="1.0"?>
<!-- Generated by scripts/install-clients.sh. Intentionally empty: tests pass
     the filesystem explicitly (hadoop fs -fs hdfs://HOST:PORT ...) or put their
     own *-site.xml in $HADOOP_CONF_DIR, which comes first on the classpath. -->
<configuration>
</configuration>'

# log4j2 (log4j-core + log4j-slf4j2-impl) reads log4j2.properties from the classpath.
write_file "$HADOOP_CONF/log4j2.properties" '# Generated by scripts/install-clients.sh: WARN and above to stderr only.
status = error
name = ringfs-hadoop-client
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss.SSS} %-5p %c{1}: %m%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
# "Unable to load native-hadoop library" on every start
logger.native.name = org.apache.hadoop.util.NativeCodeLoader
logger.native.level = error'

# Same policy for anything that still configures log4j 1.x style.
write_file "$HADOOP_CONF/log4j.properties" '# Generated by scripts/install-clients.sh: WARN and above to stderr only.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%d{HH:mm:ss.SSS} %-5p %c{1}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR'

# ---------------------------------------------------------------- 4. wrappers --
log "writing wrappers in $BIN"
mkdir -p "$BIN"

write_file "$BIN/hadoop" "#!/usr/bin/env bash
# Generated by scripts/install-clients.sh -- a minimal 'hadoop'/'hdfs' launcher
# over the pyspark-bundled Hadoop client jars. Also installed as 'hdfs'.
#   hadoop fs|dfs ARGS...   org.apache.hadoop.fs.FsShell (e.g. fs -fs hdfs://127.0.0.1:PORT -ls /)
#   hadoop dfsadmin ARGS... $DFSADMIN_CLASS (only if present in the jars)
#   hadoop version          org.apache.hadoop.util.VersionInfo
#   hadoop classpath        print the classpath
#   hadoop CLASSNAME ARGS...run any main class on the Hadoop classpath
# Env: HADOOP_CONF_DIR (prepended to the classpath), HADOOP_CLASSPATH (appended),
#      HADOOP_OPTS / HADOOP_CLIENT_OPTS (JVM options), HADOOP_USER_NAME (read by
#      the Java client itself), RINGFS_JAVA (java binary override).
set -euo pipefail
JAVA=\${RINGFS_JAVA:-'$JAVA'}
HADOOP_JARS='$HADOOP_JARS'
HADOOP_CONF='$HADOOP_CONF'
HAS_DFSADMIN=$HAS_DFSADMIN
CP=\"\$HADOOP_CONF:\$HADOOP_JARS/*\"
if [[ -n \${HADOOP_CONF_DIR:-} ]]; then CP=\"\$HADOOP_CONF_DIR:\$CP\"; fi
if [[ -n \${HADOOP_CLASSPATH:-} ]]; then CP=\"\$CP:\$HADOOP_CLASSPATH\"; fi
me=\$(basename \"\$0\")
usage() {
    echo \"usage: \$me fs|dfs ARGS... | dfsadmin ARGS... | version | classpath | CLASSNAME ARGS...\" >&2
    exit 2
}
[[ \$# -ge 1 ]] || usage
cmd=\$1; shift
case \$cmd in
    fs|dfs)   class=org.apache.hadoop.fs.FsShell ;;
    dfsadmin)
        if [[ \$HAS_DFSADMIN != 1 ]]; then
            echo \"\$me dfsadmin: $DFSADMIN_CLASS is not in the client jars (\$HADOOP_JARS):\" >&2
            echo \"  it lives in the server-side hadoop-hdfs jar, which no reachable registry ships.\" >&2
            echo \"  Use the DistributedFileSystem API instead (getDataNodeStats, setSafeMode, ...).\" >&2
            exit 3
        fi
        class=$DFSADMIN_CLASS ;;
    version)  class=org.apache.hadoop.util.VersionInfo ;;
    classpath) echo \"\$CP\"; exit 0 ;;
    -h|--help|help) usage ;;
    *)
        # like the real launcher: anything else that looks like a Java class name
        if [[ \$cmd =~ ^([a-z_][A-Za-z0-9_]*\\.)*[A-Z][A-Za-z0-9_\$]*\$ ]]; then
            class=\$cmd
        else
            echo \"\$me: unsupported command '\$cmd'\" >&2; usage
        fi ;;
esac
# shellcheck disable=SC2086  # HADOOP_OPTS is a list of JVM flags
exec \"\$JAVA\" \${HADOOP_OPTS:-} \${HADOOP_CLIENT_OPTS:-} -cp \"\$CP\" \"\$class\" \"\$@\"" 755
ln -sfn hadoop "$BIN/hdfs"

# Wrapper scripts rather than symlinks: a symlinked venv python would not find
# its pyvenv.cfg and would run outside the venv.
for exe in python snakebite hdfsn; do
    write_file "$BIN/$exe" "#!/bin/sh
# Generated by scripts/install-clients.sh
exec '$VENV/bin/$exe' \"\$@\"" 755
done
# spark-submit needs a Java >= 17 (pyspark $PYSPARK_VERSION); pin JAVA_HOME to ours unless set.
write_file "$BIN/spark-submit" "#!/bin/sh
# Generated by scripts/install-clients.sh
: \"\${JAVA_HOME:=$JAVA_HOME_RESOLVED}\"
: \"\${PYSPARK_PYTHON:=$VENV/bin/python}\"
export JAVA_HOME PYSPARK_PYTHON
exec '$VENV/bin/spark-submit' \"\$@\"" 755

# --------------------------------------------------------------- 5. env.sh --
write_file "$DEPS/env.sh" "# Generated by scripts/install-clients.sh -- source me: . '$DEPS/env.sh'
export RINGFS_DEPS='$DEPS'
export HADOOP_JARS='$HADOOP_JARS'
export HADOOP_CONF='$HADOOP_CONF'
export RINGFS_JAVA='$JAVA'
export RINGFS_JAVAC='$JAVAC'
export JAVA_HOME='$JAVA_HOME_RESOLVED'
export SPARK_HOME='$PYSPARK_DIR'
export PYSPARK_PYTHON='$VENV/bin/python'
case \":\$PATH:\" in
    *\":$BIN:\"*) ;;
    *) export PATH='$BIN':\"\$PATH\" ;;
esac"

printf '%s\n%s\n%s\n' "$STAMP" "$JAVA" "$JAVAC" >"$MARKER"
log "installed into $DEPS (source $DEPS/env.sh)"
print_versions
