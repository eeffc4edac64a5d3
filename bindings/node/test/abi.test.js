'use strict';
// The binding's tables come from the library and from lib/abi.js (written from
// include/orchestra.h by scripts/abi-tables): no copy of its own to drift. Regression: the
// error-name table was once built with a fixed length of 17, so ORC_ETLS (-18) was missing.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const orc = require('../lib/index.js');
const abi = require('../lib/abi.js');

test('codes holds every code of the library, ORC_ETLS included', () => {
  assert.equal(orc.codes.ORC_ETLS, -18);
  assert.equal(orc.errorName(-18), 'ORC_ETLS');
  const fromLibrary = {};
  for (let code = -1; orc.errorName(code) !== 'ORC_EUNKNOWN'; code--) fromLibrary[orc.errorName(code)] = code;
  assert.deepEqual({ ...orc.codes }, fromLibrary);
  assert.equal(Object.isFrozen(orc.codes), true);
});

test("the library's table is the header's (lib/abi.js)", () => {
  assert.deepEqual(Object.entries(orc.codes), abi.errors.map(([name, value]) => [name, value]));
  for (const [name, value, text] of abi.errors) {
    assert.equal(orc.errorName(value), name);
    assert.equal(orc.strerror(value), text);
  }
  const lowest = abi.errors[abi.errors.length - 1][1];
  assert.equal(orc.errorName(lowest - 1), 'ORC_EUNKNOWN');
});

test('a TLS error thrown by the library carries code and errno', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orc-abi-'));
  const notPem = path.join(dir, 'ca.pem');
  fs.writeFileSync(notPem, 'this is not a PEM certificate\n');
  try {
    assert.throws(() => new orc.Client('wss://127.0.0.1/', { tlsCa: notPem }), (e) => {
      assert.equal(e.code, 'ORC_ETLS');
      assert.equal(e.errno, -18);
      assert.equal(e.errno, orc.codes[e.code]);
      return true;
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Priority is the header enum', () => {
  assert.deepEqual({ ...orc.Priority }, { ...abi.enums.orc_priority_t.values });
  assert.equal(orc.Priority.CRITICAL, abi.constants.ORC_PRIORITY_CRITICAL);
});
