"""Cases (事件/案件): the closed loop of GB/T 30428 — intake, 立案, 派遣, 处置, 核查, 结案, 评价.

Modules named by the domain, bottom to top (a module imports only those before it):
models (tables; the light beside the model) · workflow (the transition table) · categories
(reference data: 大类/小类, limits, routing, typed questions) · scope (who sees which case;
what is published) · clock (stages, working-time deadlines, overdue) · notices (texts,
recipients, timeline entries) · resident_view (the two views of a case) · intake (reports,
查重, "me too", follow) · actions (handlers, `act`, who may act) · queue (lists, counts,
requests, contact) · stats (综合评价, the daily roll-up) · sweep (督办, the worker's tasks) ·
schemas · views.
"""
