import { HttpClient, HttpErrorResponse } from '@angular/common/http';
import { inject, signal, Signal } from '@angular/core';

/** ApiState is a page's view of one API call. */
export type ApiState<T> =
  | { status: 'loading' }
  | { status: 'ok'; data: T }
  | { status: 'error'; code: number; reason: string | null; requiredTier: string | null };

/**
 * getJson calls the demo API once and exposes the outcome as a signal. An
 * error is shown on the page (data-testid="page-error"): with the guard and
 * the API asking one policy, a 403 here is the bug the story is about.
 */
export function getJson<T>(url: string): Signal<ApiState<T>> {
  const state = signal<ApiState<T>>({ status: 'loading' });
  inject(HttpClient)
    .get<T>(url)
    .subscribe({
      next: (data) => state.set({ status: 'ok', data }),
      error: (e: HttpErrorResponse) =>
        state.set({
          status: 'error',
          code: e.status,
          reason: e.error?.reason ?? null,
          requiredTier: e.error?.required_tier ?? null,
        }),
    });
  return state.asReadonly();
}
