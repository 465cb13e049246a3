/**
 * Local delivery, for recipients without a next hop (the embedded default has none): the
 * message goes into `dataDir/mailbox/new/`, Maildir style (written under tmp/, fsync'ed,
 * renamed, directory fsync'ed), with a Return-Path and a Delivered-To per recipient in
 * front (RFC 5321 §4.4: the final delivery adds Return-Path).
 *
 * The file is named after the queue id, so delivering the same message again after a
 * crash replaces the earlier copy instead of adding a second one.
 */
import type { Spool, SpoolEnvelope } from '../spool/spool.js';
import type { RcptResult } from './nexthop.js';

export async function deliverLocally(spool: Spool, env: SpoolEnvelope, rcpts: string[], message: Buffer): Promise<RcptResult[]> {
  const trace = `Return-Path: <${env.mailFrom}>\r\n${rcpts.map((r) => `Delivered-To: ${r}\r\n`).join('')}`;
  try {
    await spool.write('mailbox', `${env.id}.eml`, [Buffer.from(trace), message], { replace: true });
    return rcpts.map((rcpt) => ({ rcpt, status: 'accepted', code: 250, text: `stored as ${env.id}.eml` }));
  } catch (e) {
    // A full disk or the like: try again later (the spool copy is untouched).
    const text = `mailbox folder: ${(e as Error).message}`;
    return rcpts.map((rcpt) => ({ rcpt, status: 'deferred', code: 0, text }));
  }
}
