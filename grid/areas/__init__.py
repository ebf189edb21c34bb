"""Areas (区域): the city → district → street → community → grid hierarchy, memberships,
departments, and the one scope filter every other context uses.

Modules, bottom to top (a module imports only those before it):
models (tables) · service (scope, reading and editing the hierarchy, the 网格公示卡, locate;
what other contexts import) · boundaries (boundary import/export and validation) ·
memberships (人员归属: who works where; grant rules) · departments (职能部门 and their
members) · schemas · views. (One exception, older than this layout: service.update_area
imports boundaries inside the function to validate a replaced boundary.)
"""
