import { Component } from '@angular/core';
import { RouterLink } from '@angular/router';
import { ApiError } from '../api-error';
import { getJson } from '../api';

export interface Video {
  id: string;
  title: string;
  duration_seconds: number;
}

/** VideosPage lists the catalogue; anyone may browse it. */
@Component({
  selector: 'app-videos',
  imports: [ApiError, RouterLink],
  template: `
    <section data-testid="page-videos">
      <h1>Videos</h1>
      @let s = videos();
      @if (s.status === 'ok') {
        <ul data-testid="videos-list">
          @for (v of s.data.videos; track v.id) {
            <li>
              <a [routerLink]="['/videos', v.id]" [attr.data-testid]="'video-link-' + v.id">
                {{ v.title }}
              </a>
              <span class="muted">{{ minutes(v) }} min</span>
            </li>
          }
        </ul>
      }
      <app-api-error [state]="s" />
    </section>
  `,
})
export class VideosPage {
  readonly videos = getJson<{ videos: Video[] }>('/api/videos');

  minutes(v: Video): number {
    return Math.round(v.duration_seconds / 60);
  }
}
