/** Address patterns of rule scopes (`only` / `except`), table-driven. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { addressTest } from '../host/pipeline/scope.js';

it('address patterns: an address, a domain, its subdomains, the null sender; case-insensitive', () => {
  const test = addressTest(['Postmaster@Example.org', 'example.net', '.example.com', '<>']);
  const table: [string, boolean][] = [
    ['postmaster@example.org', true],
    ['POSTMASTER@EXAMPLE.ORG', true],
    ['abuse@example.org', false],
    ['anyone@example.net', true],
    ['anyone@mail.example.net', false],
    ['anyone@mail.example.com', true],
    ['anyone@example.com', false],
    ['anyone@notexample.com', false],
    ['', true],
    ['postmaster', false],
  ];
  for (const [address, expected] of table) assert.equal(test(address), expected, address || '<>');
});
