/** Address lists (CIDR) and domain checks used by relay control and exemptions. */
import { BlockList, isIP } from 'node:net';

/** Strips the IPv4-mapped IPv6 prefix (::ffff:192.0.2.1 → 192.0.2.1). */
export function plainIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

export function networkList(cidrs: string[]): (ip: string) => boolean {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/') as [string, string | undefined];
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(addr, bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits), type);
  }
  return (ip) => {
    const p = plainIp(ip);
    const family = isIP(p);
    return family !== 0 && list.check(p, family === 6 ? 'ipv6' : 'ipv4');
  };
}

const loopbackIp = networkList(['127.0.0.0/8', '::1/128']);

/** Whether a listen host (an IP, or a name) is a loopback address: only this machine can reach it. */
/** `host:port` as a URL or a log writes it: an IPv6 address in brackets (RFC 3986 §3.2.2). */
export function hostPort(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || loopbackIp(host);
}

/** The domain of an address, lower-cased; '' for none. RFC 5321 §4.1.1.3: bare "postmaster" is local. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}
