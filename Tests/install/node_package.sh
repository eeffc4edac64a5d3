#!/usr/bin/env bash
# The Node package as it ships: `cmake --install` of the component "node" into a fresh prefix,
# the package folder copied into an application's node_modules (the prefix then removed), and
# `require('orchestra')` there with no environment variables: the addon and the library must be
# the copies inside the package, and they must work (a message round trip, a WebSocket echo on
# 127.0.0.1).
#   node_package.sh NODE BUILD_DIR
set -euo pipefail
node=$1; build=$2
work=$(mktemp -d /tmp/orc-nodepkg.XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0; passes=0
check() { if eval "$2"; then passes=$((passes+1)); echo "ok: $1"; else fails=$((fails+1)); echo "FAILED: $1"; fi; }

cmake --install "$build" --prefix "$work/prefix" --component node >/dev/null
installed=$work/prefix/lib/node_modules/orchestra
for f in package.json lib/index.js lib/abi.js index.d.ts orchestra.node liborchestra.so.0; do
  check "installed $f" "[ -f '$installed/$f' ]"
done
check "the addon looks for the library beside itself only" \
  "[ \"\$(readelf -d '$installed/orchestra.node' | sed -n 's/.*R\(UN\)\?PATH.*\[\(.*\)\]/\2/p')\" = '\$ORIGIN' ]"

mkdir -p "$work/app/node_modules"
cp -r "$installed" "$work/app/node_modules/orchestra"
rm -rf "$work/prefix"
cat > "$work/app/main.js" <<'JS'
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
setTimeout(() => { console.error('timed out'); process.exit(1); }, 30000).unref();
const o = require('orchestra');
const pkg = fs.realpathSync(path.join(__dirname, 'node_modules', 'orchestra'));
assert.strictEqual(o.addonPath, path.join(pkg, 'orchestra.node'));
const mapped = new Set(fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
  .filter((l) => l.includes('liborchestra')).map((l) => l.trim().split(/\s+/).pop()));
assert.deepStrictEqual([...mapped], [path.join(pkg, 'liborchestra.so.0')]);
const m = new o.Message('task.stream', { source: 'pkg', payload: { data: 'hello' } });
assert.deepStrictEqual(o.Message.decode(m.encode('msgpack'), 'msgpack').payload, { data: 'hello' });
(async () => {
  const server = new o.Server({ host: '127.0.0.1', port: 0 });
  server.on('connection', (conn) => conn.on('message', (data) => conn.send(data)));
  const port = await server.listen();
  const client = new o.Client(`ws://127.0.0.1:${port}/`);
  const echoed = new Promise((resolve) => client.once('message', resolve));
  await client.connect();
  client.send('ping');
  assert.strictEqual(await echoed, 'ping');
  await client.close();
  await server.close();
  console.log(`libraryVersion ${o.libraryVersion} from ${o.addonPath}`);
})().catch((e) => { console.error(e); process.exit(1); });
JS
check "require('orchestra') from a copied package, no environment: packaged addon and library, an echo" \
  "(cd '$work/app' && env -i PATH=/usr/bin:/bin '$node' main.js)"
echo "node package: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
