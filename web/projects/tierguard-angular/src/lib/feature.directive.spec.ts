import { Component, signal } from '@angular/core';
import { TestBed } from '@angular/core/testing';
import { TierguardFeatureDirective } from './feature.directive';
import { TierguardService } from './service';
import { expectRoutes, flushRoutes, routeMap, settle, setup } from '../testing/helpers';

@Component({
  imports: [TierguardFeatureDirective],
  template: `
    <button *tgFeature="name(); else upgrade" class="main">{{ name() }}</button>
    <ng-template #upgrade let-tier let-reason="reason" let-feature="feature">
      <span class="prompt">{{ feature }} needs {{ tier }} ({{ reason }})</span>
    </ng-template>
    <i *tgFeature="'4k'" class="bare">4k</i>
  `,
})
class Host {
  readonly name = signal('hd');
}

async function render() {
  const env = setup();
  const fixture = TestBed.createComponent(Host);
  fixture.detectChanges();
  const req = await expectRoutes(env.http);
  flushRoutes(req, routeMap('r1'), '"e1"');
  await settle();
  await fixture.whenStable();
  const el = fixture.nativeElement as HTMLElement;
  return { ...env, fixture, el };
}

describe('TierguardFeatureDirective', () => {
  it('shows the template for an allowed feature', async () => {
    const { el } = await render();
    expect(el.querySelector('.main')?.textContent).toBe('hd');
    expect(el.querySelector('.prompt')).toBeNull();
  });

  it('hides a denied feature that has no else template', async () => {
    const { el } = await render();
    expect(el.querySelector('.bare')).toBeNull();
  });

  it('shows the else template with the required tier for a denied feature', async () => {
    const { el, fixture } = await render();
    fixture.componentInstance.name.set('4k');
    await settle();
    await fixture.whenStable();
    expect(el.querySelector('.main')).toBeNull();
    expect(el.querySelector('.prompt')?.textContent?.trim()).toBe('4k needs pro (tier_required)');
  });

  it('follows the route map when the policy changes', async () => {
    const { el, fixture, http } = await render();
    fixture.componentInstance.name.set('4k');
    await settle();
    await fixture.whenStable();
    expect(el.querySelector('.prompt')).not.toBeNull();

    TestBed.inject(TierguardService).noteRevision('r2');
    const req = await expectRoutes(http);
    const open = routeMap('r2');
    open.features['4k'] = { allow: true, reason: 'allowed', required_tier: null };
    flushRoutes(req, open, '"e2"');
    await settle();
    await fixture.whenStable();

    expect(el.querySelector('.prompt')).toBeNull();
    expect(el.querySelector('.main')?.textContent).toBe('4k');
    expect(el.querySelector('.bare')?.textContent).toBe('4k');
  });
});
