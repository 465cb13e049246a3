import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadRule, type Harness } from 'portcullis/sdk/testing';

describe('business-hours', () => {
  let h: Harness;
  before(async () => {
    h = await loadRule('examples/business-hours.ts', {
      options: { senderDomains: ['partner.example'], from: 8, to: 17, utcOffsetMinutes: 60 },
      start: Date.UTC(2026, 0, 5, 9, 0), // Monday 10:00 at UTC+1
    });
  });
  after(() => h.close());

  async function mailFrom(address: string) {
    const s = await h.connect({ helo: 'gw.partner.example' });
    return (await s.mail(address)).reply;
  }

  it('takes partner mail during business hours', async () => {
    assert.equal(await mailFrom('orders@partner.example'), null);
  });

  it('tempfails it in the evening and over the weekend, then takes it again on Monday', async () => {
    h.clock.set(Date.UTC(2026, 0, 5, 19, 30)); // Monday 20:30 local
    assert.equal(await mailFrom('orders@partner.example'), '451 4.7.1 Outside business hours, please try again later');
    h.clock.advance(4 * 24 * 3600_000); // Friday 20:30
    assert.equal(await mailFrom('orders@partner.example'), '451 4.7.1 Outside business hours, please try again later');
    h.clock.advance(12 * 3600_000); // Saturday 08:30
    assert.equal(await mailFrom('orders@partner.example'), '451 4.7.1 Outside business hours, please try again later');
    h.clock.advance(48 * 3600_000); // Monday 08:30
    assert.equal(await mailFrom('orders@partner.example'), null);
  });

  it('never holds other senders', async () => {
    h.clock.set(Date.UTC(2026, 0, 10, 23, 0)); // Saturday night
    assert.equal(await mailFrom('someone@elsewhere.example'), null);
  });
});
