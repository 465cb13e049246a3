/**
 * The access map's line grammar (Sendmail's, Postfix's and smtpf's access files):
 * `KEY [KEY…] ACTION [TEXT]`, each KEY a tag and a value (`Connect:192.0.2.0/24`). It
 * lives here, once: the built-in `access` rule parses its options and its store list with
 * it, its options schema takes `ACCESS_LINE_PATTERN`, and `portcullis access add` refuses
 * exactly the lines the rule would.
 */

/** The tags a key starts with: the client (`Connect:`), the sender (`From:`), a recipient (`To:`), written as here (`parseAccessLine` says so when the case differs). */
export const ACCESS_TAGS = ['Connect', 'From', 'To'] as const;
export type AccessTag = (typeof ACCESS_TAGS)[number];

/**
 * What a line does when its keys match: `OK` accepts (the rules after it are skipped),
 * `REJECT` and `TEMPFAIL` refuse (with the line's text), `DISCARD` accepts and drops,
 * `SPF-PASS` accepts as OK does when the sender's SPF passes (RFC 7208), else does nothing.
 */
export const ACCESS_ACTIONS = ['OK', 'REJECT', 'TEMPFAIL', 'DISCARD', 'SPF-PASS'] as const;
export type AccessAction = (typeof ACCESS_ACTIONS)[number];

/**
 * Source of the pattern a well-formed line matches (a JSON Schema `pattern`: the rule's
 * options take it, so the config is refused with its path where a line is wrong).
 * `parseAccessLine` accepts exactly the lines it matches, and says what is wrong with the others.
 */
export const ACCESS_LINE_PATTERN = `^\\s*((${ACCESS_TAGS.join('|')}):\\S+\\s+)+(${ACCESS_ACTIONS.join('|')})(\\s|$)`;

/**
 * The store list the `access` rule reads besides its options (its `storeList` option's
 * default) and `portcullis access add` writes to.
 */
export const ACCESS_STORE_LIST = 'access';

/** One line of the map, parsed. */
export interface AccessEntry {
  /** Tag and value, the value in lower case (addresses, domains and networks match case-insensitively). */
  keys: [AccessTag, string][];
  action: AccessAction;
  /** The reply text of a REJECT or TEMPFAIL ('' for the action's default). */
  text: string;
  /** The line in its one spelling (single spaces, lower-case values): two lines with the same are the same entry. */
  line: string;
}

const LINE = new RegExp(ACCESS_LINE_PATTERN, 'u');
const KEY = new RegExp(`^(${ACCESS_TAGS.join('|')}):(\\S+)$`, 'u');
const isAction = (w: string): w is AccessAction => (ACCESS_ACTIONS as readonly string[]).includes(w);
const TAG_LIST = ACCESS_TAGS.map((t) => `${t}:`).join(', ');
const ACTION_LIST = ACCESS_ACTIONS.join(', ');

/** Why a line the pattern refuses is wrong: the first word at fault, and what it should be. */
function whatIsWrong(words: string[]): string {
  if (!words.length) return 'an empty line';
  let i = 0;
  while (KEY.test(words[i] ?? '')) i++;
  const word = words[i];
  if (word === undefined) return `no action after the keys: give one of ${ACTION_LIST}`;
  const tag = ACCESS_TAGS.find((t) => word.toLowerCase().startsWith(`${t.toLowerCase()}:`));
  if (tag) return word.length === tag.length + 1 ? `"${word}" is not a key: ${tag}: needs a value right after the colon` : `"${word}" is not a key: write the tag as ${tag}:`;
  if (i === 0) return `"${word}" is not a key: a line starts with ${TAG_LIST} and a value`;
  const upper = word.toUpperCase();
  if (isAction(upper)) return `"${word}" is not an action: write it as ${upper}`;
  return `"${word}" is not an action: give one of ${ACTION_LIST}`;
}

/**
 * One line of the access map, or why it is not one (a sentence naming the word at fault).
 * @example
 * parseAccessLine('Connect:192.0.2.0/24 REJECT Not from here')
 * // → { keys: [['Connect', '192.0.2.0/24']], action: 'REJECT', text: 'Not from here', line: 'Connect:192.0.2.0/24 REJECT Not from here' }
 * parseAccessLine('Conect:192.0.2.1 OK')
 * // → '"Conect:192.0.2.1" is not a key: a line starts with Connect:, From:, To: and a value'
 */
export function parseAccessLine(line: string): AccessEntry | string {
  const words = line.trim().split(/\s+/u).filter((w) => w !== '');
  if (!LINE.test(line)) return whatIsWrong(words);
  const keys: [AccessTag, string][] = [];
  for (let m = KEY.exec(words[0]!); m; m = KEY.exec(words[0] ?? '')) {
    keys.push([m[1] as AccessTag, m[2]!.toLowerCase()]);
    words.shift();
  }
  const action = words.shift() as AccessAction; // the pattern has an action here
  const text = words.join(' ');
  return { keys, action, text, line: [...keys.map(([t, v]) => `${t}:${v}`), action, ...(text ? [text] : [])].join(' ') };
}
