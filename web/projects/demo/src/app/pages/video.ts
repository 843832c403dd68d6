import { Component, inject, Injector, input, OnInit, runInInjectionContext, Signal } from '@angular/core';
import { TierguardFeatureDirective } from '@tierguard/angular';
import { ApiError } from '../api-error';
import { ApiState, getJson } from '../api';
import { Video } from './videos';

/**
 * VideoPage is for signed-in users; its 4k and hd buttons are features the
 * policy unlocks by tier, shown or replaced by an upgrade prompt.
 */
@Component({
  selector: 'app-video',
  imports: [ApiError, TierguardFeatureDirective],
  template: `
    <section data-testid="page-video">
      @let v = video();
      @let c = comments();
      @if (v.status === 'ok' && c.status === 'ok') {
        <h1 data-testid="video-title">{{ v.data.title }}</h1>
        <div class="player" data-testid="video-data">▶ {{ v.data.title }}</div>
        <div class="actions">
          <button type="button" data-testid="btn-play">Play</button>
          <button type="button" *tgFeature="'hd'; else needsHd" data-testid="btn-hd">HD</button>
          <button type="button" *tgFeature="'4k'; else needs4k" data-testid="btn-4k">Watch in 4K</button>
        </div>
        <ng-template #needsHd let-tier>
          <span class="locked" data-testid="upgrade-hd">HD needs the {{ tier }} plan</span>
        </ng-template>
        <ng-template #needs4k let-tier>
          <span class="locked" data-testid="upgrade-4k">4K needs the {{ tier }} plan</span>
        </ng-template>
        <h2>Comments</h2>
        <ul data-testid="video-comments">
          @for (x of c.data.comments; track $index) {
            <li><strong>{{ x.author }}</strong>: {{ x.text }}</li>
          }
        </ul>
      }
      <app-api-error [state]="v" />
      <app-api-error [state]="c" />
    </section>
  `,
})
export class VideoPage implements OnInit {
  /** The :id route parameter. */
  readonly id = input.required<string>();

  private readonly injector = inject(Injector);
  protected video!: Signal<ApiState<Video>>;
  protected comments!: Signal<ApiState<{ comments: { author: string; text: string }[] }>>;

  ngOnInit(): void {
    const id = encodeURIComponent(this.id());
    runInInjectionContext(this.injector, () => {
      this.video = getJson<Video>(`/api/videos/${id}`);
      this.comments = getJson(`/api/videos/${id}/comments`);
    });
  }
}
