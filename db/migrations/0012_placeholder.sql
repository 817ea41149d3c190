-- finxd: compatible_from 9
--
-- PLACEHOLDER so that branch notify14 builds and migrates on its own
-- (migrations are numbered without gaps; notify14's is 0013).  The
-- lead drops this file at merge, in favour of the real 0012.
SELECT 1;
